"""The mesh on Google Cloud as deployed: what it needs from a project (the IAM grants the code
relies on, :mod:`salesmesh.cloud.grants`) and a preflight that checks a real project for all of
it (:mod:`salesmesh.cloud.doctor`, ``salesmesh doctor --project P``).

Terraform (``terraform/``) creates what is listed here; ``tests/terraform`` holds the Terraform to
the same table offline, so the code, the Terraform and the preflight cannot drift apart.
"""
