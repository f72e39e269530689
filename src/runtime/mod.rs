//! The container runtime of the node agent: images (pull, store, unpack),
//! bundles (OCI runtime specs) and the per-pod shim that drives youki's
//! libcontainer. The agent sees it through [`cri::ContainerRuntime`], CRI's
//! shape in process, so the mechanism here stays free of Kubernetes policy.

pub mod bundle;
pub mod cri;
pub mod image;
pub mod local;
pub mod shim;
