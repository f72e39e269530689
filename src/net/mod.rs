//! Pod networking (to be built): sandbox network namespaces, bridge, veth,
//! IPAM, masquerading.
