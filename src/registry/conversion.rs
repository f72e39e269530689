//! Conversions between served and stored representations.

use serde_json::Value;

use super::Conversion;

/// events.k8s.io/v1 Event <-> stored core/v1 Event.
pub struct EventsV1;

impl Conversion for EventsV1 {
    fn to_storage(&self, obj: Value) -> Value {
        obj
    }
    fn from_storage(&self, obj: Value) -> Value {
        obj
    }
}

/// autoscaling/v1 HorizontalPodAutoscaler <-> stored autoscaling/v2.
pub struct HpaV1;

impl Conversion for HpaV1 {
    fn to_storage(&self, obj: Value) -> Value {
        obj
    }
    fn from_storage(&self, obj: Value) -> Value {
        obj
    }
}
