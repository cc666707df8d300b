//! The loop thread's side of the control API: the changes an operator asks for, made on the
//! controller between cycles (the only place its state is touched), each stored in the
//! profile before the answer goes back.

use super::action::{Action, ApiError, IntentSpec, OverrideSpec};
use super::auth::Caller;
use crate::allocate::overrides::Override;
use crate::collect::Observation;
use crate::forecast::intents::{Intent, IntentError, MAX_DURATION_S};
use crate::model::{Resource, TenantId};
use crate::pipeline::Controller;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The profile's operator-state kind the intents' notes are kept under.
const NOTES: &str = "intent_note";

/// The profile's operator-state kind the next intent id is kept under (one row, key
/// [`NEXT_ID`]): ids are never given twice, across cancels and restarts.
const IDS: &str = "intent_ids";
const NEXT_ID: &str = "next";

/// A change for the loop thread, with where its answer goes.
pub struct Request {
    pub action: Action,
    pub caller: Caller,
    pub reply: tokio::sync::oneshot::Sender<Result<Value, ApiError>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} by {}", self.action.describe(), self.caller)
    }
}

/// What the loop thread keeps for the control API besides the controller.
#[derive(Debug, Default)]
pub struct Desk {
    /// Notes on intents, by intent id.
    pub notes: BTreeMap<u64, String>,
    /// No intent id below this is given again (0: none given yet).
    pub next_id: u64,
}

impl Desk {
    /// Start with the notes the profile kept.
    pub fn new(rows: Vec<(String, String)>) -> Desk {
        let notes = (rows.into_iter())
            .filter_map(|(k, v)| Some((k.parse().ok()?, serde_json::from_str(&v).ok()?)))
            .collect();
        Desk { notes, next_id: 0 }
    }

    /// Make the change `action` asks for; `obs` is the last cycle's observation (the
    /// tenants an operator can name), `now_ms` the time.
    pub fn act(
        &mut self,
        controller: &mut Controller,
        obs: Option<&Observation>,
        action: Action,
        caller: &Caller,
        now_ms: i64,
    ) -> Result<Value, ApiError> {
        match action {
            Action::OverrideSet { tenant, spec } => {
                if controller.policy().is_none() {
                    return Err(ApiError::bad(
                        "the daemon runs no allocation policy: an override would hold \
                         nothing (start it with --policy)",
                    ));
                }
                let id = find(obs, &tenant)?;
                let o = override_of(id, &spec, caller, now_ms);
                if let Some(obs) = obs {
                    (controller.overrides())
                        .check_fits(&o, obs, controller.rules())
                        .map_err(|e| ApiError::bad(format!("override for {tenant}: {e}")))?;
                }
                controller
                    .set_override(o)
                    .map_err(|e| ApiError::bad(format!("override for {tenant}: {e}")))?;
                tracing::info!(tenant = %tenant, by = %caller, "override set");
                Ok(json!({ "tenant": tenant, "set": true }))
            }
            Action::OverrideClear { tenant } => {
                let uuid = match find(obs, &tenant) {
                    Ok(id) => id.uuid.to_string(),
                    // A tenant that has gone can still have its override cleared.
                    Err(e) => (controller.overrides().list().into_iter())
                        .find(|o| *o.name == *tenant || *o.uuid == *tenant)
                        .map(|o| o.uuid.to_string())
                        .ok_or(e)?,
                };
                match controller.clear_override(&uuid) {
                    Ok(Some(_)) => {
                        tracing::info!(tenant = %tenant, by = %caller, "override cleared");
                        Ok(json!({ "tenant": tenant, "cleared": true }))
                    }
                    Ok(None) => Err(ApiError::not_found(format!(
                        "{tenant} has no override to clear"
                    ))),
                    Err(e) => Err(ApiError::unavailable(format!(
                        "the override could not be stored: {e}"
                    ))),
                }
            }
            Action::IntentAdd(spec) => self.declare(controller, obs, spec, caller, now_ms),
            Action::IntentCancel { id } => {
                let Some(stage) = controller.forecasts_mut() else {
                    return Err(ApiError::unavailable("the daemon does not forecast"));
                };
                let owner = (stage.all_intents())
                    .find(|(_, b)| b.pending().iter().any(|p| p.intent.id == id))
                    .map(|(u, _)| u.clone());
                let Some(uuid) = owner else {
                    return Err(ApiError::not_found(format!("no pending intent {id}")));
                };
                stage.cancel(&uuid, id);
                controller.save_forecasts(now_ms);
                if self.notes.remove(&id).is_some() {
                    self.save_notes(controller);
                }
                tracing::info!(id, by = %caller, "intent cancelled");
                Ok(json!({ "id": id, "cancelled": true }))
            }
            Action::Pause | Action::Resume => {
                let pause = action == Action::Pause;
                if controller.policy().is_none() {
                    return Err(ApiError::bad(
                        "the daemon runs no allocation policy: there is nothing to pause or \
                         resume (start it with --policy)",
                    ));
                }
                controller.actuator_mut().set_dry_run(pause);
                tracing::info!(by = %caller, "{}", if pause {
                    "paused: allocations are decided and logged, no domain setting is changed"
                } else {
                    "resumed: allocations are applied again"
                });
                Ok(json!({ "paused": pause }))
            }
            other => Err(ApiError::bad(format!(
                "{} is not a change (internal routing error)",
                other.describe()
            ))),
        }
    }

    fn declare(
        &mut self,
        controller: &mut Controller,
        obs: Option<&Observation>,
        spec: IntentSpec,
        caller: &Caller,
        now_ms: i64,
    ) -> Result<Value, ApiError> {
        check_window(&spec, now_ms / 1000)?;
        let id = find(obs, &spec.tenant)?;
        let Some(stage) = controller.forecasts_mut() else {
            return Err(ApiError::unavailable("the daemon does not forecast"));
        };
        let mut next = (stage.all_intents())
            .flat_map(|(_, b)| b.pending().iter().map(|p| p.intent.id))
            .chain(self.notes.keys().copied())
            .max()
            .unwrap_or(0)
            .saturating_add(1)
            .max(self.next_id)
            .max(1);
        let amounts = spec.demand.amounts();
        let mut declared = Vec::new();
        for r in Resource::ALL {
            let Some(amount) = *amounts.get(r) else {
                continue;
            };
            let intent = Intent {
                id: next,
                resource: r,
                start_s: spec.start_unix_s,
                duration_s: spec.duration_s,
                amount,
            };
            if let Err(e) = stage.declare(&id.uuid, intent, now_ms / 1000) {
                for d in &declared {
                    stage.cancel(&id.uuid, *d);
                }
                if let IntentError::UnknownTenant { .. } = e {
                    return Err(ApiError {
                        status: 409,
                        message: format!(
                            "{} is not forecast yet: its first forecast bucket has not \
                             completed, or the host reports no usage for it",
                            spec.tenant
                        ),
                    });
                }
                return Err(ApiError::bad(format!("{}: {e}", spec.tenant)));
            }
            declared.push(next);
            next += 1;
        }
        self.next_id = next;
        self.save_next_id(controller);
        controller.save_forecasts(now_ms);
        if let Some(note) = &spec.note {
            for d in &declared {
                self.notes.insert(*d, note.clone());
            }
            self.save_notes(controller);
        }
        tracing::info!(tenant = %spec.tenant, ids = ?declared, by = %caller, "intent declared");
        Ok(json!({ "tenant": spec.tenant, "ids": declared }))
    }

    /// Forget the notes of intents no longer pending.
    pub fn prune(&mut self, controller: &Controller) {
        let Some(stage) = controller.forecasts() else {
            return;
        };
        let pending: std::collections::HashSet<u64> = (stage.all_intents())
            .flat_map(|(_, b)| b.pending().iter().map(|p| p.intent.id))
            .collect();
        let before = self.notes.len();
        self.notes.retain(|id, _| pending.contains(id));
        if self.notes.len() < before {
            self.save_notes(controller);
        }
    }

    fn save_next_id(&self, controller: &Controller) {
        let Some(p) = controller.profile() else {
            return;
        };
        let rows = vec![(NEXT_ID.to_string(), self.next_id.to_string())];
        if let Err(e) = p.save_operator_state(IDS, rows) {
            tracing::error!("cannot store the next intent id: {e}");
        }
    }

    fn save_notes(&self, controller: &Controller) {
        let Some(p) = controller.profile() else {
            return;
        };
        let rows = (self.notes.iter())
            .map(|(id, n)| (id.to_string(), serde_json::to_string(n).unwrap_or_default()))
            .collect();
        if let Err(e) = p.save_operator_state(NOTES, rows) {
            tracing::error!("cannot store the intents' notes: {e}");
        }
    }
}

/// Load the intents' notes and the next intent id the profile kept.
pub fn load_notes(db: &crate::profile::ProfileDb) -> Result<Desk, crate::profile::ProfileError> {
    let mut desk = Desk::new(db.load_operator_state(NOTES)?);
    desk.next_id = (db.load_operator_state(IDS)?.into_iter())
        .find(|(k, _)| k == NEXT_ID)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    Ok(desk)
}

/// An intent's window, checked before anything else: the same rules as
/// [`Intent::validate`], said in the request's fields and the command's flags.
fn check_window(spec: &IntentSpec, now_s: i64) -> Result<(), ApiError> {
    let probe = Intent {
        id: 0,
        resource: Resource::Cpu,
        start_s: spec.start_unix_s,
        duration_s: spec.duration_s,
        amount: 0.0,
    };
    probe.validate(now_s).map_err(|e| {
        ApiError::bad(match e {
            IntentError::Duration { duration_s, .. } => format!(
                "duration_s (--duration): {duration_s} s is not between 1 s and 7 days \
                 ({MAX_DURATION_S} s)"
            ),
            IntentError::Ended { end_s, .. } => format!(
                "start_unix_s (--start): the window {} … {end_s} (Unix seconds) ended before \
                 now ({now_s}); an intent declares demand still to come",
                spec.start_unix_s
            ),
            IntentError::TooFarAhead { start_s, .. } => format!(
                "start_unix_s (--start): {start_s} is more than 30 days after now ({now_s})"
            ),
            other => other.to_string(),
        })
    })
}

/// The tenant of the last observation with this name or UUID.
fn find<'a>(obs: Option<&'a Observation>, tenant: &str) -> Result<&'a TenantId, ApiError> {
    (obs.into_iter().flat_map(|o| o.tenants.iter()))
        .map(|t| &t.id)
        .find(|id| &*id.name == tenant || &*id.uuid == tenant)
        .ok_or_else(|| ApiError::unknown_tenant(tenant))
}

fn override_of(id: &TenantId, spec: &OverrideSpec, caller: &Caller, now_ms: i64) -> Override {
    Override {
        class: spec.class,
        min: spec.min.amounts(),
        max: spec.max.amounts(),
        freeze: spec.freeze,
        expires_ms: spec.ttl_seconds.map(|s| now_ms + (s * 1000.0) as i64),
        ..Override::of(id, caller.to_string(), now_ms)
    }
}
