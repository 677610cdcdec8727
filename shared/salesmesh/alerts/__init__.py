"""Alerting, the chain's third link: policies (one file, shared with Terraform), Cloud
Monitoring's incident notification (schema 1.2), and the local monitor that raises them."""
