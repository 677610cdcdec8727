"""The second link of the chain: a finished run becomes a served model version.

``deploy``: what ``deploy_model`` does with a run's manifest (verify, register, gate, roll out).
``policy``: the promotion rules as pure functions (gate, canary split and verdict, retirement).
``versions``: what ``salesmesh versions`` and ``salesmesh predict`` print.
"""
