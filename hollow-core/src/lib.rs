//! # hollow-core
//!
//! Hollow Kubernetes nodes: fake kubelets that a real control plane cannot tell from
//! real ones.
//!
//! With the `testenv` feature, [`testenv`] starts a real local control plane (etcd,
//! kube-apiserver, kube-scheduler, kube-controller-manager) for tests.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "testenv")]
#[cfg_attr(docsrs, doc(cfg(feature = "testenv")))]
pub mod testenv;
