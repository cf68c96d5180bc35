//! What a connector's lanes run: its custom guest for the exports the
//! component has, the built-in guest for the rest.

use super::bindings::{
    AttemptInfo, AttemptOutcome, KafkaRecord, RecordRef, RetryDecision, TransformOutcome,
};
use super::{GuestEngine, GuestError, GuestInstance, PreparedGuest};
use crate::config::GuestSettings;

/// Which guest serves each export, pre-instantiated.
#[derive(Clone)]
pub struct GuestPlan {
    custom: Option<PreparedGuest>,
    builtin: Option<PreparedGuest>,
    transform_custom: bool,
    decide_custom: bool,
}

impl GuestPlan {
    /// Loads and checks a connector's guest. `builtin_config` is what the
    /// built-in guest's `init` receives (the strategy keys).
    pub async fn prepare(
        engine: &GuestEngine,
        connector: &str,
        settings: &GuestSettings,
        builtin_config: Vec<(String, String)>,
    ) -> Result<Self, GuestError> {
        let custom = match &settings.path {
            Some(path) => {
                let component = engine.load(path).await?;
                Some(engine.prepare(
                    &component,
                    connector,
                    settings.config.clone(),
                    settings.limits,
                )?)
            }
            None => None,
        };
        let transform_custom = custom
            .as_ref()
            .is_some_and(PreparedGuest::exports_transform);
        let decide_custom = custom.as_ref().is_some_and(PreparedGuest::exports_decide);
        let builtin = if transform_custom && decide_custom {
            None
        } else {
            Some(engine.prepare_builtin(connector, builtin_config, settings.limits)?)
        };
        Ok(Self {
            custom,
            builtin,
            transform_custom,
            decide_custom,
        })
    }

    /// Instantiates every guest once and runs its `init`, so a bad guest or
    /// a configuration its `init` refuses stops the connector before it
    /// consumes anything.
    pub async fn dry_run(&self) -> Result<(), GuestError> {
        for prepared in self.custom.iter().chain(&self.builtin) {
            prepared.instantiate().await?;
        }
        Ok(())
    }

    /// Which guest serves `transform` and `decide`: "custom" or "built-in".
    pub fn describe(&self) -> (&'static str, &'static str) {
        let name = |custom: bool| if custom { "custom" } else { "built-in" };
        (name(self.transform_custom), name(self.decide_custom))
    }

    /// Whether the guest that decides reads response headers: a custom
    /// `decide` may; the built-in guest decides from the status and body.
    pub fn decide_reads_response_headers(&self) -> bool {
        self.decide_custom
    }

    /// Instances for one partition lane, built on first use.
    pub fn lane(&self) -> LaneGuests {
        LaneGuests {
            plan: self.clone(),
            custom: None,
            builtin: None,
        }
    }
}

/// A lane's guest instances. An instance is dropped after any failed call
/// (a trap poisons its store) and rebuilt on the next call.
pub struct LaneGuests {
    plan: GuestPlan,
    custom: Option<GuestInstance>,
    builtin: Option<GuestInstance>,
}

impl LaneGuests {
    /// Calls `transform` on the guest that serves it.
    pub async fn transform(
        &mut self,
        record: &KafkaRecord,
    ) -> Result<TransformOutcome, GuestError> {
        let custom = self.plan.transform_custom;
        let result = self.instance(custom).await?.transform(record).await;
        self.forget_on_error(custom, result.is_err());
        result
    }

    /// Calls `decide` on the guest that serves it.
    pub async fn decide(
        &mut self,
        record: &RecordRef,
        outcome: &AttemptOutcome,
        info: AttemptInfo,
    ) -> Result<RetryDecision, GuestError> {
        let custom = self.plan.decide_custom;
        let result = self
            .instance(custom)
            .await?
            .decide(record, outcome, info)
            .await;
        self.forget_on_error(custom, result.is_err());
        result
    }

    async fn instance(&mut self, custom: bool) -> Result<&mut GuestInstance, GuestError> {
        let (slot, prepared) = if custom {
            (&mut self.custom, self.plan.custom.as_ref())
        } else {
            (&mut self.builtin, self.plan.builtin.as_ref())
        };
        if slot.is_none() {
            let prepared = prepared.expect("GuestPlan prepares every guest an export needs");
            // Rare (a lane's first call, or after a failed one), and its
            // future is large: boxed, so that every call's future, and so
            // every record's, stays small.
            *slot = Some(Box::pin(prepared.instantiate()).await?);
        }
        Ok(slot.as_mut().expect("just set"))
    }

    fn forget_on_error(&mut self, custom: bool, failed: bool) {
        if failed {
            if custom {
                self.custom = None;
            } else {
                self.builtin = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    async fn plan(engine: &GuestEngine, path: Option<&str>) -> GuestPlan {
        let settings = GuestSettings {
            path: path.map(|p| Path::new(p).to_owned()),
            ..GuestSettings::default()
        };
        GuestPlan::prepare(engine, "c", &settings, Vec::new())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn only_a_custom_decide_reads_response_headers() {
        let engine = GuestEngine::new().unwrap();
        let builtin_only = plan(&engine, None).await;
        assert_eq!(builtin_only.describe(), ("built-in", "built-in"));
        assert!(!builtin_only.decide_reads_response_headers());

        let transform_only = plan(&engine, Some(wasmsink_guest_artifacts::JSON_ENVELOPE)).await;
        assert_eq!(transform_only.describe(), ("custom", "built-in"));
        assert!(!transform_only.decide_reads_response_headers());

        let custom_decide = plan(&engine, Some(wasmsink_guest_artifacts::HTTP_RETRY)).await;
        assert_eq!(custom_decide.describe().1, "custom");
        assert!(custom_decide.decide_reads_response_headers());
    }
}
