//! Lead offers: the state machine. Pure: given an offered lead as stored
//! (its plan and its offer rows), an event (an agent accepts or declines, or
//! time passes) and who is available now, it returns what changes. The store
//! applies the changes in one transaction, so of two accepts in the same
//! millisecond exactly one finds its offer still open.
//!
//! One at a time: the plan's candidates (the rotation order when the lead
//! came in) are offered in turn; a decline or an expiry passes the lead to
//! the next available candidate; after a full pass the lead goes to the
//! default owner ("no one accepted"). All at once: every candidate has an
//! open offer; the first accept wins and the others are closed as taken; when
//! every offer is declined or expired, the default owner gets it.

use serde::{Deserialize, Serialize};

use crate::config::OfferMode;

/// Where one agent's offer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OfferState {
    Open,
    Accepted,
    Declined,
    Expired,
    /// Closed without the agent acting: another agent accepted first.
    Taken,
}

impl OfferState {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferState::Open => "open",
            OfferState::Accepted => "accepted",
            OfferState::Declined => "declined",
            OfferState::Expired => "expired",
            OfferState::Taken => "taken",
        }
    }

    pub fn parse(s: &str) -> Option<OfferState> {
        Some(match s {
            "open" => OfferState::Open,
            "accepted" => OfferState::Accepted,
            "declined" => OfferState::Declined,
            "expired" => OfferState::Expired,
            "taken" => OfferState::Taken,
            _ => return None,
        })
    }
}

/// How an offered lead goes round, fixed when it comes in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferPlan {
    pub rule: String,
    pub mode: OfferMode,
    /// Agent ids in rotation order (one at a time), or everyone offered (all at once).
    pub candidates: Vec<String>,
    pub period_ms: u64,
    pub referral_fee_percent: u32,
}

/// One stored offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offer {
    pub id: i64,
    pub agent: String,
    pub state: OfferState,
    /// RFC 3339 UTC; strings of this form order as times.
    pub deadline: String,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    Accept {
        offer: i64,
        by: &'a str,
    },
    Decline {
        offer: i64,
        by: &'a str,
    },
    /// Time passed: offers whose deadline is at or before `now` expire.
    Tick,
}

/// What to change, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Set an open offer's state (accepted, declined, expired or taken).
    Close { offer: i64, state: OfferState },
    /// Offer the lead to this agent until `deadline`.
    Open { agent: String, deadline: String },
    /// The lead is settled: this agent becomes owner and user.
    Settle { agent: String, how: Settled },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Accepted,
    /// A full pass with no acceptance: the default owner takes it.
    NoOneAccepted,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("offer {0} does not exist")]
    Unknown(i64),
    #[error("offer {offer} is for {agent}, not {by}")]
    NotYours {
        offer: i64,
        agent: String,
        by: String,
    },
    #[error("offer {offer} is no longer open: {state}")]
    NotOpen { offer: i64, state: &'static str },
}

/// The first offers of a newly offered lead: to the first available
/// candidate (one at a time) or to every available candidate (all at once).
/// Empty when nobody is available (the caller then routes the lead on).
pub fn first_offers(
    plan: &OfferPlan,
    deadline: &str,
    available: &dyn Fn(&str) -> bool,
) -> Vec<Change> {
    let open = |agent: &String| Change::Open {
        agent: agent.clone(),
        deadline: deadline.to_string(),
    };
    match plan.mode {
        OfferMode::OneAtATime => plan
            .candidates
            .iter()
            .find(|a| available(a))
            .map(open)
            .into_iter()
            .collect(),
        OfferMode::AllAtOnce => plan
            .candidates
            .iter()
            .filter(|a| available(a))
            .map(open)
            .collect(),
    }
}

/// The changes an event makes to one offered lead. `now` and `next_deadline`
/// are RFC 3339 UTC; `available` says whether an agent may get an offer now
/// (active, not halted, not away); `default_owner` takes an unaccepted lead.
pub fn step(
    plan: &OfferPlan,
    offers: &[Offer],
    event: &Event<'_>,
    now: &str,
    next_deadline: &str,
    available: &dyn Fn(&str) -> bool,
    default_owner: &str,
) -> Result<Vec<Change>, OfferError> {
    let mut changes = Vec::new();
    // Offers as they will stand after `changes`.
    let mut states: Vec<(i64, &str, OfferState)> = offers
        .iter()
        .map(|o| (o.id, o.agent.as_str(), o.state))
        .collect();
    let mut close = |changes: &mut Vec<Change>, id: i64, state: OfferState| {
        changes.push(Change::Close { offer: id, state });
        if let Some(s) = states.iter_mut().find(|s| s.0 == id) {
            s.2 = state;
        }
    };
    match event {
        Event::Accept { offer, by } | Event::Decline { offer, by } => {
            let o = offers
                .iter()
                .find(|o| o.id == *offer)
                .ok_or(OfferError::Unknown(*offer))?;
            if o.agent != *by {
                return Err(OfferError::NotYours {
                    offer: *offer,
                    agent: o.agent.clone(),
                    by: by.to_string(),
                });
            }
            // An offer past its deadline is as good as expired, even if the
            // expiry has not been written yet.
            if o.state != OfferState::Open || o.deadline.as_str() <= now {
                let state = if o.state == OfferState::Open {
                    OfferState::Expired
                } else {
                    o.state
                };
                return Err(OfferError::NotOpen {
                    offer: *offer,
                    state: state.as_str(),
                });
            }
            if matches!(event, Event::Accept { .. }) {
                close(&mut changes, o.id, OfferState::Accepted);
                for other in offers
                    .iter()
                    .filter(|x| x.id != o.id && x.state == OfferState::Open)
                {
                    close(&mut changes, other.id, OfferState::Taken);
                }
                changes.push(Change::Settle {
                    agent: o.agent.clone(),
                    how: Settled::Accepted,
                });
                return Ok(changes);
            }
            close(&mut changes, o.id, OfferState::Declined);
        }
        Event::Tick => {
            for o in offers
                .iter()
                .filter(|o| o.state == OfferState::Open && o.deadline.as_str() <= now)
            {
                close(&mut changes, o.id, OfferState::Expired);
            }
            if changes.is_empty() {
                return Ok(changes);
            }
        }
    }
    // Something closed without an acceptance: hand over, or settle.
    if states.iter().any(|s| s.2 == OfferState::Open) {
        return Ok(changes); // all at once: others still deciding
    }
    if plan.mode == OfferMode::OneAtATime {
        let offered = |agent: &str| states.iter().any(|s| s.1 == agent);
        if let Some(next) = plan.candidates.iter().find(|a| !offered(a) && available(a)) {
            changes.push(Change::Open {
                agent: next.clone(),
                deadline: next_deadline.to_string(),
            });
            return Ok(changes);
        }
    }
    changes.push(Change::Settle {
        agent: default_owner.to_string(),
        how: Settled::NoOneAccepted,
    });
    Ok(changes)
}

/// The token in an offer's link: the offer id and a signature over the offer
/// and its agent, so a link cannot be guessed or moved to another offer or
/// agent. It dies with the offer: once the offer is decided the page says so.
pub fn token(secret: &str, offer: i64, agent: &str) -> String {
    use hmac::Mac;
    let signature = mac(secret, offer, agent)
        .map(|m| hex(&m.finalize().into_bytes()[..SIGNATURE_BYTES]))
        .unwrap_or_default();
    format!("{offer}.{signature}")
}

/// The offer a token names, if the signature matches (`agent_of` looks the
/// offer's agent up).
pub fn verify_token(
    secret: &str,
    token: &str,
    agent_of: impl FnOnce(i64) -> Option<String>,
) -> Option<i64> {
    use hmac::Mac;
    let (id, sig) = token.split_once('.')?;
    let id: i64 = id.parse().ok()?;
    let sig = unhex(sig).filter(|s| s.len() == SIGNATURE_BYTES)?;
    let agent = agent_of(id)?;
    mac(secret, id, &agent)?.verify_truncated_left(&sig).ok()?;
    Some(id)
}

/// 128 bits of HMAC-SHA256: plenty for a link that dies with its offer.
const SIGNATURE_BYTES: usize = 16;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn mac(secret: &str, offer: i64, agent: &str) -> Option<HmacSha256> {
    use hmac::Mac;
    // HMAC accepts a key of any length; the error case cannot happen.
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    m.update(format!("leadmail offer {offer} for {agent}").as_bytes());
    Some(m)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-12-03T10:00:00Z";
    const T1: &str = "2026-12-03T10:15:00Z";
    const T2: &str = "2026-12-03T10:30:00Z";

    fn plan(mode: OfferMode) -> OfferPlan {
        OfferPlan {
            rule: "web".into(),
            mode,
            candidates: vec!["bob".into(), "cara".into(), "eve".into()],
            period_ms: 900_000,
            referral_fee_percent: 25,
        }
    }

    fn offer(id: i64, agent: &str, state: OfferState) -> Offer {
        Offer {
            id,
            agent: agent.into(),
            state,
            deadline: T1.into(),
        }
    }

    fn everyone(_: &str) -> bool {
        true
    }

    fn run(
        p: &OfferPlan,
        offers: &[Offer],
        e: Event<'_>,
        now: &str,
    ) -> Result<Vec<Change>, OfferError> {
        step(p, offers, &e, now, T2, &everyone, "amy")
    }

    #[test]
    fn tokens_name_their_offer_and_cannot_be_forged_or_moved() {
        let t = token("s3cret", 42, "bob");
        assert_eq!(verify_token("s3cret", &t, |_| Some("bob".into())), Some(42));
        assert_eq!(
            verify_token("other", &t, |_| Some("bob".into())),
            None,
            "another secret"
        );
        assert_eq!(
            verify_token("s3cret", &t, |_| Some("cara".into())),
            None,
            "another agent"
        );
        let moved = t.replacen("42.", "43.", 1);
        assert_eq!(
            verify_token("s3cret", &moved, |_| Some("bob".into())),
            None,
            "another offer"
        );
        assert_eq!(
            verify_token("s3cret", "42.zz", |_| Some("bob".into())),
            None
        );
        assert_eq!(
            verify_token("s3cret", "nonsense", |_| Some("bob".into())),
            None
        );
        assert_eq!(
            verify_token("s3cret", "42.", |_| Some("bob".into())),
            None,
            "empty signature"
        );
    }

    #[test]
    fn one_at_a_time_starts_with_the_first_available_candidate() {
        let p = plan(OfferMode::OneAtATime);
        let first = first_offers(&p, T1, &|a| a != "bob");
        assert_eq!(
            first,
            vec![Change::Open {
                agent: "cara".into(),
                deadline: T1.into()
            }]
        );
        assert!(first_offers(&p, T1, &|_| false).is_empty());
    }

    #[test]
    fn all_at_once_offers_every_available_candidate() {
        let p = plan(OfferMode::AllAtOnce);
        let first = first_offers(&p, T1, &|a| a != "eve");
        assert_eq!(first.len(), 2);
    }

    #[test]
    fn accepting_settles_the_lead_on_the_agent() {
        let p = plan(OfferMode::OneAtATime);
        let offers = [offer(1, "bob", OfferState::Open)];
        let c = run(
            &p,
            &offers,
            Event::Accept {
                offer: 1,
                by: "bob",
            },
            T0,
        )
        .unwrap();
        assert_eq!(
            c,
            vec![
                Change::Close {
                    offer: 1,
                    state: OfferState::Accepted
                },
                Change::Settle {
                    agent: "bob".into(),
                    how: Settled::Accepted
                }
            ]
        );
    }

    #[test]
    fn only_the_offered_agent_may_act_and_only_while_open() {
        let p = plan(OfferMode::OneAtATime);
        let offers = [offer(1, "bob", OfferState::Open)];
        assert!(matches!(
            run(
                &p,
                &offers,
                Event::Accept {
                    offer: 1,
                    by: "cara"
                },
                T0
            ),
            Err(OfferError::NotYours { .. })
        ));
        assert!(matches!(
            run(
                &p,
                &offers,
                Event::Accept {
                    offer: 9,
                    by: "bob"
                },
                T0
            ),
            Err(OfferError::Unknown(9))
        ));
        // Past the deadline, before the expiry is written: too late.
        assert_eq!(
            run(
                &p,
                &offers,
                Event::Accept {
                    offer: 1,
                    by: "bob"
                },
                T1
            ),
            Err(OfferError::NotOpen {
                offer: 1,
                state: "expired"
            })
        );
        let declined = [offer(1, "bob", OfferState::Declined)];
        assert!(matches!(
            run(
                &p,
                &declined,
                Event::Accept {
                    offer: 1,
                    by: "bob"
                },
                T0
            ),
            Err(OfferError::NotOpen {
                state: "declined",
                ..
            })
        ));
    }

    #[test]
    fn a_decline_hands_over_to_the_next_candidate() {
        let p = plan(OfferMode::OneAtATime);
        let offers = [offer(1, "bob", OfferState::Open)];
        let c = run(
            &p,
            &offers,
            Event::Decline {
                offer: 1,
                by: "bob",
            },
            T0,
        )
        .unwrap();
        assert_eq!(
            c[1],
            Change::Open {
                agent: "cara".into(),
                deadline: T2.into()
            }
        );
    }

    #[test]
    fn expiry_hands_over_skipping_who_is_unavailable_now() {
        let p = plan(OfferMode::OneAtATime);
        let offers = [offer(1, "bob", OfferState::Open)];
        assert!(
            run(&p, &offers, Event::Tick, T0).unwrap().is_empty(),
            "not yet due"
        );
        let c = step(&p, &offers, &Event::Tick, T1, T2, &|a| a != "cara", "amy").unwrap();
        assert_eq!(
            c,
            vec![
                Change::Close {
                    offer: 1,
                    state: OfferState::Expired
                },
                Change::Open {
                    agent: "eve".into(),
                    deadline: T2.into()
                }
            ]
        );
    }

    #[test]
    fn a_full_pass_without_acceptance_goes_to_the_default_owner() {
        let p = plan(OfferMode::OneAtATime);
        let offers = [
            offer(1, "bob", OfferState::Declined),
            offer(2, "cara", OfferState::Expired),
            offer(3, "eve", OfferState::Open),
        ];
        let c = run(
            &p,
            &offers,
            Event::Decline {
                offer: 3,
                by: "eve",
            },
            T0,
        )
        .unwrap();
        assert_eq!(
            c.last(),
            Some(&Change::Settle {
                agent: "amy".into(),
                how: Settled::NoOneAccepted
            })
        );
    }

    #[test]
    fn all_at_once_first_accept_wins_and_the_rest_are_taken() {
        let p = plan(OfferMode::AllAtOnce);
        let offers = [
            offer(1, "bob", OfferState::Open),
            offer(2, "cara", OfferState::Open),
            offer(3, "eve", OfferState::Declined),
        ];
        let c = run(
            &p,
            &offers,
            Event::Accept {
                offer: 2,
                by: "cara",
            },
            T0,
        )
        .unwrap();
        assert!(c.contains(&Change::Close {
            offer: 1,
            state: OfferState::Taken
        }));
        assert!(c.contains(&Change::Settle {
            agent: "cara".into(),
            how: Settled::Accepted
        }));
        // The second accept, applied after the first (one transaction each), is refused.
        let after = [
            offer(1, "bob", OfferState::Taken),
            offer(2, "cara", OfferState::Accepted),
            offer(3, "eve", OfferState::Declined),
        ];
        assert_eq!(
            run(
                &p,
                &after,
                Event::Accept {
                    offer: 1,
                    by: "bob"
                },
                T0
            ),
            Err(OfferError::NotOpen {
                offer: 1,
                state: "taken"
            })
        );
    }

    #[test]
    fn all_at_once_waits_while_anyone_is_still_deciding() {
        let p = plan(OfferMode::AllAtOnce);
        let offers = [
            offer(1, "bob", OfferState::Open),
            offer(2, "cara", OfferState::Open),
        ];
        let c = run(
            &p,
            &offers,
            Event::Decline {
                offer: 1,
                by: "bob",
            },
            T0,
        )
        .unwrap();
        assert_eq!(c.len(), 1, "no hand-over, no settlement: {c:?}");
        let expired_all = run(&p, &offers, Event::Tick, T1).unwrap();
        assert_eq!(
            expired_all.last(),
            Some(&Change::Settle {
                agent: "amy".into(),
                how: Settled::NoOneAccepted
            })
        );
    }
}
