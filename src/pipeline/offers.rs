//! Offered leads through time: accept, decline, expiry and hand-over. The
//! state machine (`crate::offer`) decides; this applies its changes in one
//! transaction with the notifications they send, so an accept, a decline or
//! an expiry commits whole or not at all, and of two accepts of the same
//! lead the second finds its offer closed.

use std::time::Duration;

use serde::Serialize;

use super::{Pipeline, PipelineError};
use crate::config::BrokerageConfig;
use crate::lead::ParsedMessage;
use crate::notify;
use crate::offer::{self, Change, Event, OfferError, OfferPlan, OfferState, Settled};
use crate::route::{self, Directory, RouteKind, RoutingDecision};
use crate::store::{NewNotification, OfferedLead, StoreError, StoreTx, now, time_after};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferAction {
    Accept,
    Decline,
}

/// What an agent's accept or decline did.
#[derive(Debug, Clone, Serialize)]
pub struct OfferOutcome {
    pub offer: i64,
    pub lead_id: i64,
    pub state: &'static str,
    /// Who holds the lead now: its owner once settled, else who has it on offer.
    pub summary: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OfferActError {
    #[error(transparent)]
    Offer(#[from] OfferError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl From<StoreError> for OfferActError {
    fn from(e: StoreError) -> Self {
        OfferActError::Pipeline(PipelineError::Store(e))
    }
}

impl Pipeline {
    /// An agent accepts or declines an offer (from the CLI or the offer page).
    pub async fn act_on_offer(
        &self,
        offer_id: i64,
        by: &str,
        action: OfferAction,
    ) -> Result<OfferOutcome, OfferActError> {
        let row = self
            .store
            .offer(offer_id)
            .await?
            .ok_or(OfferError::Unknown(offer_id))?;
        let mut tx = self.store.begin().await?;
        let lead = tx
            .offered_lead(row.lead_id)
            .await?
            .ok_or(OfferError::Unknown(offer_id))?;
        let event = match action {
            OfferAction::Accept => Event::Accept {
                offer: offer_id,
                by,
            },
            OfferAction::Decline => Event::Decline {
                offer: offer_id,
                by,
            },
        };
        let changes = self.apply(&mut tx, &lead, &event, by).await?;
        tx.commit().await?;
        self.outbox.notify_one();
        let summary = changes
            .iter()
            .rev()
            .find_map(|c| match c {
                Change::Settle { agent, how } => Some(match how {
                    Settled::Accepted => format!("lead {} is now {agent}'s", lead.lead_id),
                    Settled::NoOneAccepted => {
                        format!("no one accepted: lead {} went to {agent}", lead.lead_id)
                    }
                }),
                Change::Open { agent, .. } => Some(format!("offered to {agent} next")),
                Change::Close { .. } => None,
            })
            .unwrap_or_else(|| "others are still deciding".to_string());
        Ok(OfferOutcome {
            offer: offer_id,
            lead_id: lead.lead_id,
            state: match action {
                OfferAction::Accept => OfferState::Accepted.as_str(),
                OfferAction::Decline => OfferState::Declined.as_str(),
            },
            summary,
        })
    }

    /// Expires offers past their deadline and hands their leads on; returns
    /// how many leads moved. Safe to run from several processes: each lead
    /// is handled in its own write transaction, which re-reads its offers.
    pub async fn expire_offers(&self) -> Result<usize, PipelineError> {
        let mut moved = 0;
        for lead_id in self.store.leads_with_due_offers(&now()).await? {
            let mut tx = self.store.begin().await?;
            let Some(lead) = tx.offered_lead(lead_id).await? else {
                continue;
            };
            let changes = match self.apply(&mut tx, &lead, &Event::Tick, "leadmail").await {
                Ok(c) => c,
                Err(OfferActError::Pipeline(e)) => return Err(e),
                // A tick raises no offer errors; nothing to do for this lead.
                Err(OfferActError::Offer(_)) => continue,
            };
            tx.commit().await?;
            if !changes.is_empty() {
                moved += 1;
                self.outbox.notify_one();
            }
        }
        Ok(moved)
    }

    /// Opens a new lead's first offers and returns their notifications.
    pub(super) async fn open_first_offers(
        &self,
        tx: &mut StoreTx,
        brokerage: &BrokerageConfig,
        lead_id: i64,
        plan: &OfferPlan,
        parsed: &ParsedMessage,
        available: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<NewNotification>, PipelineError> {
        let deadline = time_after(Duration::from_millis(plan.period_ms));
        let mut notes = Vec::new();
        for change in offer::first_offers(plan, &deadline, available) {
            if let Change::Open { agent, deadline } = change {
                let id = tx
                    .open_offer(lead_id, &brokerage.id, &agent, &deadline)
                    .await?;
                notes.extend(
                    self.offer_note(brokerage, lead_id, id, &agent, parsed, plan, &deadline),
                );
            }
        }
        Ok(notes)
    }

    /// Applies an event to an offered lead inside `tx`; queues what it sends.
    async fn apply(
        &self,
        tx: &mut StoreTx,
        lead: &OfferedLead,
        event: &Event<'_>,
        actor: &str,
    ) -> Result<Vec<Change>, OfferActError> {
        let brokerage = self
            .config
            .brokerage(&lead.brokerage_id)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("brokerage {} is not configured", lead.brokerage_id))
            })?
            .clone();
        let directory = Directory::from_config(&brokerage);
        let at = now();
        let halts = tx.active_halts(&brokerage.id, &at).await?;
        let aways = tx.active_aways(&brokerage.id, &at).await?;
        let available = |id: &str| {
            directory.agent(id).is_some_and(|a| a.active)
                && !halts.iter().any(|h| h.agent == id)
                && !aways.iter().any(|a| a.agent == id)
        };
        let next_deadline = time_after(Duration::from_millis(lead.plan.period_ms));
        let changes = offer::step(
            &lead.plan,
            &lead.offers,
            event,
            &at,
            &next_deadline,
            &available,
            &brokerage.default_owner,
        )?;
        if changes.is_empty() {
            return Ok(changes);
        }
        let parsed = self.stored_lead_message(lead.message_row).await?;
        let mut notes = Vec::new();
        for change in &changes {
            match change {
                Change::Close { offer, state } => {
                    let by = if *state == OfferState::Expired || *state == OfferState::Taken {
                        "leadmail"
                    } else {
                        actor
                    };
                    tx.close_offer(lead.lead_id, *offer, *state, by).await?;
                    if *state == OfferState::Taken
                        && let Some(o) = lead.offers.iter().find(|o| o.id == *offer)
                    {
                        notes.extend(notify::taken_notification(
                            &self.config,
                            &brokerage,
                            lead.lead_id,
                            *offer,
                            &o.agent,
                            &parsed,
                        ));
                    }
                }
                Change::Open { agent, deadline } => {
                    let id = tx
                        .open_offer(lead.lead_id, &brokerage.id, agent, deadline)
                        .await?;
                    notes.extend(self.offer_note(
                        &brokerage,
                        lead.lead_id,
                        id,
                        agent,
                        &parsed,
                        &lead.plan,
                        deadline,
                    ));
                }
                Change::Settle { agent, how } => {
                    let decision = self
                        .settle(tx, &brokerage, &directory, lead, &parsed, agent, *how)
                        .await?;
                    if let Some(plan) = &decision.offer {
                        notes.extend(
                            self.open_first_offers(
                                tx,
                                &brokerage,
                                lead.lead_id,
                                plan,
                                &parsed,
                                &available,
                            )
                            .await?,
                        );
                    } else {
                        notes.extend(
                            notify::lead_notifications(
                                &self.config,
                                &brokerage,
                                lead.lead_id,
                                &parsed,
                                &decision,
                            )
                            .into_iter()
                            .filter(|n| !aways.iter().any(|a| a.agent == n.agent_id)),
                        );
                    }
                }
            }
        }
        for n in &notes {
            tx.queue_notification(n).await?;
        }
        Ok(changes)
    }

    /// Settles the lead: on the accepting agent, on the default owner after a
    /// full pass, or (a direct offer nobody took) by the general rules.
    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        tx: &mut StoreTx,
        brokerage: &BrokerageConfig,
        directory: &Directory,
        lead: &OfferedLead,
        parsed: &ParsedMessage,
        agent: &str,
        how: Settled,
    ) -> Result<RoutingDecision, PipelineError> {
        let plan = &lead.plan;
        if how == Settled::NoOneAccepted && plan.rule == route::DIRECT_OFFER {
            let at = now();
            let halts = tx.active_halts(&brokerage.id, &at).await?;
            let aways = tx.active_aways(&brokerage.id, &at).await?;
            let cursors = tx.cursors(&brokerage.id).await?;
            let decision = route::route(route::RouteInput {
                lead: parsed,
                directory,
                halts: &halts,
                aways: &aways,
                general_only: true,
                cursors: &cursors,
                listing_agent: None,
            });
            if let Some(c) = decision.cursor() {
                tx.set_cursor(&brokerage.id, &c.pool, c.after).await?;
            }
            tx.reroute_lead(lead.lead_id, &decision).await?;
            return Ok(decision);
        }
        let (fee, note) = match how {
            Settled::Accepted => (
                Some(plan.referral_fee_percent),
                format!("accepted the offer (rule {:?})", plan.rule),
            ),
            Settled::NoOneAccepted => (
                None,
                "no one accepted: the brokerage's default owner".to_string(),
            ),
        };
        tx.settle_lead(lead.lead_id, agent, fee, &note).await?;
        Ok(RoutingDecision {
            kind: if plan.rule == route::DIRECT_OFFER {
                RouteKind::Direct
            } else {
                RouteKind::General
            },
            owner: agent.to_string(),
            user: agent.to_string(),
            rule: Some(plan.rule.clone()),
            reason: note,
            unassigned: false,
            offer: None,
            delegated_from: None,
            trace: route::RoutingTrace {
                step: route::Step::GeneralRule,
                notes: Vec::new(),
                rules: Vec::new(),
                candidates: plan.candidates.clone(),
                skipped: Vec::new(),
                cursor: None,
            },
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn offer_note(
        &self,
        brokerage: &BrokerageConfig,
        lead_id: i64,
        offer_id: i64,
        agent: &str,
        parsed: &ParsedMessage,
        plan: &OfferPlan,
        deadline: &str,
    ) -> Option<NewNotification> {
        let link = match (&self.offer_secret, self.config.http.base_url()) {
            (Some(secret), Some(base)) => Some(format!(
                "{base}/offers/{}",
                offer::token(secret, offer_id, agent)
            )),
            _ => None,
        };
        notify::offer_notification(
            &self.config,
            brokerage,
            lead_id,
            offer_id,
            agent,
            parsed,
            deadline,
            &route::humane(Duration::from_millis(plan.period_ms)),
            plan.referral_fee_percent,
            link,
        )
    }

    /// The lead's message parsed again from its stored bytes (parsing is
    /// pure, so this is the lead as it was first read).
    async fn stored_lead_message(&self, message_row: i64) -> Result<ParsedMessage, PipelineError> {
        let stored = self
            .store
            .stored_message(message_row)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("message {message_row} is missing")))?;
        Ok(crate::parse::parse(&stored.raw, &self.options))
    }
}
