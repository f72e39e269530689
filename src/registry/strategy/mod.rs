//! Per-kind hooks for the generic REST store (upstream's registry "strategy").
//! Objects are JSON values; hooks that need typed access decode into the
//! k8s-openapi structs themselves.
//!
//! Order on create: decode -> `default` -> generic system fields ->
//! `prepare_create` -> `allocate` -> `validate` -> `validate_create` -> store.
//! Order on update: decode -> `default` -> `prepare_update` -> `validate_update`
//! -> store.

use async_trait::async_trait;
use serde_json::Value;

use crate::api::status::{ApiError, FieldError};
use crate::store::Store;

pub mod kinds;

/// What a name must look like, per kind (upstream's ValidateNameFunc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds).
    Subdomain,
    /// RFC 1123 label (namespaces, services).
    Label,
    /// Any string without `/` or `%`, not `.` or `..` (rbac, events...).
    PathSegment,
}

/// What hooks may consult: the store (read-only by convention) and cluster
/// settings. Allocators live behind this too.
pub struct Ctx<'a> {
    pub store: &'a dyn Store,
    pub service_cidr: &'a str,
    pub cluster_cidr: &'a str,
    pub node_port_range: (u16, u16),
}

#[async_trait]
pub trait Strategy: Send + Sync + 'static {
    /// Apply upstream's defaults (idempotent; also run on update).
    fn default(&self, _obj: &mut Value) {}

    /// Decode into the typed struct to reject wrong types and missing
    /// required fields (422). The generic default accepts anything.
    fn check_typed(&self, _obj: &Value) -> Result<(), FieldError> {
        Ok(())
    }

    /// Validate a new object (after defaulting). Name validation is generic.
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Checks only a create makes (after `validate`), as upstream's
    /// strategies tell Validate from ValidateUpdate.
    fn validate_create(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Validate an update: immutable fields etc. `validate` also runs.
    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Reset fields a create may not set (e.g. status for kinds with a status
    /// subresource is kept as sent by upstream for some kinds; pods clear it).
    fn prepare_create(&self, _obj: &mut Value) {}

    /// Fix up an update of the main resource, e.g. carry over status from
    /// `old` for kinds with a status subresource.
    fn prepare_update(&self, _new: &mut Value, _old: &Value) {}

    /// Allocate cluster resources on create (a Service's clusterIP, nodePorts).
    async fn allocate(&self, _ctx: &Ctx<'_>, _obj: &mut Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// Allocate on update (a Service changing to NodePort).
    async fn allocate_update(
        &self,
        _ctx: &Ctx<'_>,
        _new: &mut Value,
        _old: &Value,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    /// The value of a field for field selectors, beyond metadata.name and
    /// metadata.namespace (handled generically). None = unsupported field.
    fn field_value(&self, _obj: &Value, _field: &str) -> Option<String> {
        None
    }

    /// Field selector labels this kind supports beyond the generic ones.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether field selectors may name `field` (beyond the generic ones):
    /// the static list, or what a custom resource's CRD declares.
    fn supports_field(&self, field: &str) -> bool {
        self.selectable_fields().contains(&field)
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Graceful deletion (upstream's CheckGracefulDelete): the grace period
    /// in seconds to mark the object with instead of removing it at once, or
    /// None to remove it now. `requested` is DeleteOptions.gracePeriodSeconds.
    fn graceful_delete(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Changes the first DELETE of an object makes before finalizers are
    /// looked at (a CRD gains its cleanup finalizer).
    fn prepare_delete(&self, _obj: &mut Value) {}

    /// The custom resource served, for layers that follow its CRD: tables
    /// (printer columns), OpenAPI (schema), scale paths, field validation.
    fn custom_resource(&self) -> Option<&crate::registry::crd::CustomResource> {
        None
    }
}

/// A kind with no special behaviour.
pub struct Plain;

#[async_trait]
impl Strategy for Plain {}
