//! Upcasters: functions that turn an event type's payload from one schema version into the
//! next. Reading always yields the current shape: a v1 event read by code whose current version
//! is 3 goes through the v1→v2 and v2→v3 upcasters in turn. Stored events are never rewritten
//! (an event store is a system of record); upcasting happens on every read, as in Axon and
//! Marten.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

type UpcastFn = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// A registry of upcasters, by event type and the version they upcast from.
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: HashMap<(String, u32), UpcastFn>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut steps: Vec<_> = self.steps.keys().collect();
        steps.sort();
        f.debug_struct("Upcasters").field("steps", &steps).finish()
    }
}

impl Upcasters {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `f`, which turns a payload of `event_type` at schema version `from` into
    /// version `from + 1`. A later registration for the same step replaces the earlier.
    pub fn register(
        mut self,
        event_type: impl Into<String>,
        from: u32,
        f: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        self.steps.insert((event_type.into(), from), Arc::new(f));
        self
    }

    /// Upcasts `payload` of `event_type` from version `stored` to `current`.
    pub fn upcast(&self, event_type: &str, stored: u32, current: u32, mut payload: Value) -> Result<Value, String> {
        if stored > current {
            return Err(format!(
                "it was written at schema version {stored}, newer than this code's {current}; upgrade the reader"
            ));
        }
        for from in stored..current {
            let step = self
                .steps
                .get(&(event_type.to_string(), from))
                .ok_or_else(|| format!("no upcaster is registered from {event_type} v{from} to v{}", from + 1))?;
            payload = step(payload).map_err(|e| format!("upcaster {event_type} v{from}→v{}: {e}", from + 1))?;
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn three_generations() -> Upcasters {
        Upcasters::new()
            // v1 {"amount": 5} → v2 {"amount": 5, "currency": "EUR"}
            .register("Deposited", 1, |mut v| {
                v["currency"] = json!("EUR");
                Ok(v)
            })
            // v2 → v3: amount in cents
            .register("Deposited", 2, |v| {
                let amount = v["amount"].as_u64().ok_or("amount is not a number")?;
                Ok(json!({"cents": amount * 100, "currency": v["currency"]}))
            })
    }

    #[test]
    fn each_generation_reaches_the_current_shape() {
        let up = three_generations();
        let want = json!({"cents": 500, "currency": "EUR"});
        assert_eq!(up.upcast("Deposited", 1, 3, json!({"amount": 5})).expect("v1"), want);
        assert_eq!(up.upcast("Deposited", 2, 3, json!({"amount": 5, "currency": "EUR"})).expect("v2"), want);
        assert_eq!(up.upcast("Deposited", 3, 3, want.clone()).expect("v3"), want);
    }

    #[test]
    fn gaps_newer_versions_and_failing_steps_are_errors() {
        let up = three_generations();
        assert!(up.upcast("Withdrawn", 1, 2, json!({})).expect_err("no step").contains("no upcaster"));
        assert!(up.upcast("Deposited", 4, 3, json!({})).expect_err("newer").contains("newer"));
        assert!(up.upcast("Deposited", 2, 3, json!({"amount": "x"})).expect_err("bad").contains("not a number"));
    }
}
