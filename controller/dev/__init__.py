"""Developer tooling: a local control plane (real etcd and kube-apiserver) for `make dev` and the
end-to-end tests. Not used by the controller at run time."""
