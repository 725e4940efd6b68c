"""yuxi-k8s: run Yuxi-Know on Kubernetes with several replicas and no shared local state."""

__version__ = "0.1.0"
