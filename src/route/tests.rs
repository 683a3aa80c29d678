//! Table-driven tests of the router: every direct signal, every rule
//! condition, halts, weights and the fall-through to the default owner.

use std::collections::HashMap;

use super::*;
use crate::config::Config;
use crate::lead::{AgentHint, Contact, Envelope, LeadType, Property, Verdict};

fn brokerage(extra: &str) -> Directory {
    let text = format!(
        r#"
[[brokerages]]
id = "acme"
name = "Acme"
lead_addresses = ["leads@acme.example"]
default_owner = "amy"
{extra}
  [[brokerages.agents]]
  id = "amy"
  name = "Amy Admin"
  emails = ["amy@acme.example"]
  role = "admin"
  [[brokerages.agents]]
  id = "jane"
  name = "Jane Smith"
  emails = ["jane@acme.example"]
  lead_addresses = ["leads+jane@acme.example", "jane.leads@acme.example"]
  websites = ["https://www.janesmithhomes.example/"]
  listings = ["mls26007731"]
  [[brokerages.agents]]
  id = "bob"
  name = "Bob Stone"
  emails = ["bob@acme.example"]
  [[brokerages.agents]]
  id = "cara"
  name = "Cara Lee"
  emails = ["cara@acme.example"]
"#
    );
    let cfg = Config::from_sources(Some(&text), &[]).expect("test config is valid");
    Directory::from_config(&cfg.brokerages[0])
}

fn with_rules(rules: &str) -> Directory {
    let mut d = brokerage("");
    let text = format!(
        "[[brokerages]]\nid = \"x\"\nname = \"x\"\nlead_addresses = [\"x@x.example\"]\ndefault_owner = \"amy\"\n{rules}\n  [[brokerages.agents]]\n  id = \"amy\"\n  name = \"A\"\n  [[brokerages.agents]]\n  id = \"jane\"\n  name = \"J\"\n  [[brokerages.agents]]\n  id = \"bob\"\n  name = \"B\"\n  [[brokerages.agents]]\n  id = \"cara\"\n  name = \"C\"\n"
    );
    let cfg = Config::from_sources(Some(&text), &[]).expect("rules are valid");
    d.rules = cfg.brokerages[0].rules.clone();
    d
}

fn lead() -> ParsedMessage {
    ParsedMessage {
        verdict: Verdict::Lead,
        reason: None,
        source: "generic".into(),
        lead_type: None,
        contact: Contact {
            name: Some("Ann Lee".into()),
            email: Some("ann@example.com".into()),
            phone: None,
        },
        property: Property::default(),
        message: None,
        forwarded_by: None,
        agent_hint: None,
        message_id: None,
        subject: None,
        envelope: Envelope {
            from: Some("noreply@portal.example".into()),
            recipients: vec!["leads@acme.example".into()],
            ..Envelope::default()
        },
    }
}

fn halt(agent: &str) -> Halt {
    Halt {
        agent: agent.into(),
        reason: "vacation".into(),
        until: None,
        by: "amy".into(),
    }
}

fn run(lead: &ParsedMessage, dir: &Directory, halts: &[Halt]) -> RoutingDecision {
    route(RouteInput {
        lead,
        directory: dir,
        halts,
        aways: &[],
        general_only: false,
        cursors: &HashMap::new(),
        listing_agent: None,
    })
}

/// Routes `n` leads in a row, carrying the cursor like the store does.
fn rotation(lead: &ParsedMessage, dir: &Directory, halts: &[Halt], n: usize) -> Vec<String> {
    let mut cursors: HashMap<String, i64> = HashMap::new();
    (0..n)
        .map(|_| {
            let d = route(RouteInput {
                lead,
                directory: dir,
                halts,
                aways: &[],
                general_only: false,
                cursors: &cursors,
                listing_agent: None,
            });
            if let Some(c) = d.cursor() {
                cursors.insert(c.pool.clone(), c.after);
            }
            d.user
        })
        .collect()
}

#[test]
fn each_direct_signal_routes_to_its_agent() {
    let dir = brokerage("");
    type Edit = fn(&mut ParsedMessage);
    let cases: Vec<(&str, Edit, Step)> = vec![
        (
            "personal address",
            |l| l.envelope.recipients = vec!["jane.leads@acme.example".into()],
            Step::PersonalAddress,
        ),
        (
            "plus-addressed personal address",
            |l| l.envelope.recipients = vec!["leads+jane@acme.example".into()],
            Step::PersonalAddress,
        ),
        (
            "forwarded by the agent",
            |l| l.forwarded_by = Some("jane@acme.example".into()),
            Step::Forwarder,
        ),
        (
            "sent by the agent",
            |l| l.envelope.from = Some("JANE@acme.example".into()),
            Step::Forwarder,
        ),
        (
            "names the agent by email",
            |l| {
                l.agent_hint = Some(AgentHint {
                    name: None,
                    email: Some("jane@acme.example".into()),
                })
            },
            Step::AssignedAgent,
        ),
        (
            "names the agent by name",
            |l| {
                l.agent_hint = Some(AgentHint {
                    name: Some("jane smith".into()),
                    email: None,
                })
            },
            Step::AssignedAgent,
        ),
        (
            "agent website as sender",
            |l| l.envelope.from = Some("wordpress@janesmithhomes.example".into()),
            Step::AgentWebsite,
        ),
        (
            "agent website as property link",
            |l| l.property.url = Some("https://www.janesmithhomes.example/listing/1".into()),
            Step::AgentWebsite,
        ),
        (
            "agent website in a link",
            |l| l.envelope.link_hosts = vec!["idx.janesmithhomes.example".into()],
            Step::AgentWebsite,
        ),
        (
            "agent listing by MLS",
            |l| l.property.mls_number = Some("MLS26007731".into()),
            Step::AgentListing,
        ),
    ];
    for (name, edit, step) in cases {
        let mut l = lead();
        edit(&mut l);
        let d = run(&l, &dir, &[]);
        assert_eq!(d.kind, RouteKind::Direct, "{name}: {d:?}");
        assert_eq!(
            (d.owner.as_str(), d.user.as_str()),
            ("jane", "jane"),
            "{name}"
        );
        assert_eq!(d.trace.step, step, "{name}");
        assert!(d.cursor().is_none(), "{name}: direct leads take no turn");
    }
}

#[test]
fn signals_apply_in_the_documented_order() {
    let dir = brokerage("");
    let mut l = lead();
    // Forwarded by Bob, but sent to Jane's personal address: step 1 wins.
    l.forwarded_by = Some("bob@acme.example".into());
    l.envelope.recipients = vec!["jane.leads@acme.example".into()];
    assert_eq!(run(&l, &dir, &[]).user, "jane");
    // Without the personal address, the forwarder wins over the named agent.
    l.envelope.recipients = vec!["leads@acme.example".into()];
    l.agent_hint = Some(AgentHint {
        name: Some("Cara Lee".into()),
        email: None,
    });
    assert_eq!(run(&l, &dir, &[]).user, "bob");
}

#[test]
fn imported_listing_is_direct() {
    let dir = brokerage("");
    let l = lead();
    let d = route(RouteInput {
        lead: &l,
        directory: &dir,
        halts: &[],
        aways: &[],
        general_only: false,
        cursors: &HashMap::new(),
        listing_agent: Some("cara"),
    });
    assert_eq!(
        (d.kind, d.user.as_str(), d.trace.step),
        (RouteKind::Direct, "cara", Step::AgentListing)
    );
}

#[test]
fn unknown_named_agent_is_noted_and_general() {
    let dir = brokerage("");
    let mut l = lead();
    l.agent_hint = Some(AgentHint {
        name: Some("Zed Nobody".into()),
        email: None,
    });
    let d = run(&l, &dir, &[]);
    assert_eq!(d.kind, RouteKind::General);
    assert!(
        d.trace
            .notes
            .iter()
            .any(|n| n.contains("not in the directory"))
    );
}

#[test]
fn trust_forwarder_authenticated_needs_a_pass_from_our_server() {
    let dir = brokerage(
        "[brokerages.routing]\ntrust_forwarder = \"authenticated\"\nauthserv_id = \"mx.acme.example\"",
    );
    let mut l = lead();
    l.forwarded_by = Some("jane@acme.example".into());
    let d = run(&l, &dir, &[]);
    assert_eq!(d.kind, RouteKind::General, "forged or unsigned: no credit");
    assert!(
        d.trace
            .notes
            .iter()
            .any(|n| n.contains("no DKIM/DMARC pass")),
        "{:?}",
        d.trace
    );

    l.envelope.authentication_results =
        vec!["evil.example; dkim=pass header.d=acme.example".into()];
    assert_eq!(
        run(&l, &dir, &[]).kind,
        RouteKind::General,
        "other hosts are ignored"
    );

    l.envelope.authentication_results =
        vec!["mx.acme.example; dkim=pass header.d=acme.example".into()];
    assert_eq!(run(&l, &dir, &[]).user, "jane");
}

#[test]
fn halted_direct_agent_gets_it_or_not_per_setting() {
    let mut l = lead();
    l.forwarded_by = Some("jane@acme.example".into());
    let deliver = brokerage("");
    let d = run(&l, &deliver, &[halt("jane")]);
    assert_eq!((d.kind, d.user.as_str()), (RouteKind::Direct, "jane"));
    assert!(d.reason.contains("halted"));

    let reroute = brokerage("[brokerages.routing]\nhalted_direct = \"reroute\"");
    let d = run(&l, &reroute, &[halt("jane")]);
    assert_eq!(d.kind, RouteKind::General);
    assert_ne!(
        d.user, "jane",
        "a rerouted lead never goes back to the halted agent"
    );
}

#[test]
fn inactive_agent_gets_no_direct_lead() {
    let mut dir = brokerage("");
    dir.agents
        .iter_mut()
        .find(|a| a.id == "jane")
        .unwrap()
        .active = false;
    let mut l = lead();
    l.forwarded_by = Some("jane@acme.example".into());
    let d = run(&l, &dir, &[]);
    assert_eq!(d.kind, RouteKind::General);
    assert_ne!(d.user, "jane");
}

#[test]
fn owner_policies() {
    let dir = brokerage(
        "[brokerages.routing]\ndirect_owner = \"brokerage\"\ngeneral_owner = \"brokerage\"",
    );
    let mut l = lead();
    l.forwarded_by = Some("jane@acme.example".into());
    let d = run(&l, &dir, &[]);
    assert_eq!((d.owner.as_str(), d.user.as_str()), ("amy", "jane"));
    let d = run(&lead(), &dir, &[]);
    assert_eq!(d.owner, "amy");
    assert_ne!(d.user, "amy", "the user is still the agent in turn");
}

#[test]
fn no_rules_means_round_robin_over_agents() {
    let dir = brokerage("");
    assert_eq!(
        rotation(&lead(), &dir, &[], 6),
        ["jane", "bob", "cara", "jane", "bob", "cara"]
    );
}

#[test]
fn halted_agent_is_skipped_and_keeps_their_place() {
    let dir = brokerage("");
    assert_eq!(
        rotation(&lead(), &dir, &[halt("bob")], 4),
        ["jane", "cara", "jane", "cara"]
    );
    let d = run(&lead(), &dir, &[halt("jane")]);
    assert_eq!(d.user, "bob");
    assert_eq!(
        d.trace.skipped,
        [Skip {
            agent: "jane".into(),
            why: "halted: vacation".into()
        }]
    );
}

#[test]
fn weights_share_the_rotation() {
    let mut dir = brokerage("");
    dir.agents
        .iter_mut()
        .find(|a| a.id == "jane")
        .unwrap()
        .weight = 2;
    dir.agents
        .iter_mut()
        .find(|a| a.id == "cara")
        .unwrap()
        .weight = 0;
    let got = rotation(&lead(), &dir, &[], 6);
    assert_eq!(got, ["jane", "bob", "jane", "jane", "bob", "jane"]);
}

#[test]
fn rule_conditions_select_the_rule() {
    let dir = with_rules(
        r#"
[[brokerages.rules]]
name = "zillow buyers"
sources = ["zillow"]
lead_types = ["buyer"]
max_price = 750000
zips = ["48130", "48103"]
assign = "agent"
agent = "bob"
[[brokerages.rules]]
name = "sellers"
lead_types = ["seller"]
assign = "agent"
agent = "cara"
[[brokerages.rules]]
name = "rest"
assign = "pond"
"#,
    );
    let zillow_buyer = |price: Option<i64>, address: &str| {
        let mut l = lead();
        l.source = "zillow".into();
        l.lead_type = Some(LeadType::Buyer);
        l.property.price = price;
        l.property.address = Some(address.into());
        l
    };
    let cases = [
        (
            "all conditions hold",
            zillow_buyer(Some(400_000), "1 A St, Dexter, MI 48130"),
            "bob",
            false,
        ),
        (
            "price above max",
            zillow_buyer(Some(900_000), "1 A St, Dexter, MI 48130"),
            "amy",
            true,
        ),
        (
            "price unknown",
            zillow_buyer(None, "1 A St, Dexter, MI 48130"),
            "amy",
            true,
        ),
        (
            "zip not listed",
            zillow_buyer(Some(400_000), "1 A St, Saline, MI 48176"),
            "amy",
            true,
        ),
        (
            "zip unknown",
            zillow_buyer(Some(400_000), "1 A St"),
            "amy",
            true,
        ),
    ];
    for (name, l, user, pond) in cases {
        let d = run(&l, &dir, &[]);
        assert_eq!(
            (d.user.as_str(), d.unassigned),
            (user, pond),
            "{name}: {:?}",
            d.trace.rules
        );
    }
    let mut seller = lead();
    seller.lead_type = Some(LeadType::Seller);
    let d = run(&seller, &dir, &[]);
    assert_eq!(
        (d.user.as_str(), d.rule.as_deref()),
        ("cara", Some("sellers"))
    );
    assert!(!d.trace.rules[0].matched && d.trace.rules[1].matched);
}

#[test]
fn unavailable_agents_fall_through_to_the_next_rule_and_the_default_owner() {
    let dir = with_rules(
        r#"
[[brokerages.rules]]
name = "cara only"
assign = "agent"
agent = "cara"
[[brokerages.rules]]
name = "pool"
pool = ["jane", "bob"]
"#,
    );
    assert_eq!(
        run(&lead(), &dir, &[halt("cara")]).rule.as_deref(),
        Some("pool")
    );
    let d = run(&lead(), &dir, &[halt("cara"), halt("jane"), halt("bob")]);
    assert_eq!((d.owner.as_str(), d.user.as_str()), ("amy", "amy"));
    assert_eq!(d.trace.step, Step::DefaultOwner);
    assert!(d.reason.contains("halted or inactive"), "{}", d.reason);
}

#[test]
fn no_matching_rule_goes_to_the_default_owner() {
    let dir = with_rules("[[brokerages.rules]]\nname = \"z\"\nsources = [\"zillow\"]\n");
    let d = run(&lead(), &dir, &[]);
    assert_eq!(
        (d.owner.as_str(), d.user.as_str(), d.unassigned),
        ("amy", "amy", false)
    );
    assert!(d.reason.contains("no rule matched"));
}

#[test]
fn each_pool_has_its_own_cursor() {
    let dir = with_rules(
        "[[brokerages.rules]]\nname = \"z\"\nsources = [\"zillow\"]\npool = [\"jane\", \"bob\"]\n[[brokerages.rules]]\nname = \"rest\"\npool = [\"bob\", \"cara\"]\n",
    );
    let mut cursors: HashMap<String, i64> = HashMap::new();
    let mut zillow = lead();
    zillow.source = "zillow".into();
    let mut got = Vec::new();
    for l in [&zillow, &lead(), &zillow, &lead()] {
        let d = route(RouteInput {
            lead: l,
            directory: &dir,
            halts: &[],
            aways: &[],
            general_only: false,
            cursors: &cursors,
            listing_agent: None,
        });
        let c = d.cursor().unwrap();
        cursors.insert(c.pool.clone(), c.after);
        got.push(d.user);
    }
    assert_eq!(got, ["jane", "bob", "bob", "cara"]);
}

#[test]
fn directory_from_config_keeps_agent_settings() {
    let dir = brokerage("");
    let jane = dir.agent("jane").unwrap();
    assert_eq!(jane.websites, ["janesmithhomes.example"]);
    assert_eq!(jane.listings, ["MLS26007731"]);
    assert_eq!(jane.weight, 1);
    assert!(jane.active);
}

fn away(agent: &str, delegate: Option<&str>) -> Away {
    Away {
        agent: agent.into(),
        delegate: delegate.map(str::to_string),
        until: None,
        by: agent.into(),
    }
}

#[test]
fn offer_rules_list_the_rotation_and_move_the_cursor_past_the_first_available() {
    let dir = with_rules(
        "[[brokerages.rules]]\nname = \"web\"\nassign = \"offer\"\npool = [\"jane\", \"bob\", \"cara\"]\nacceptance_period = \"15m\"\nreferral_fee_percent = 25",
    );
    let cursors = HashMap::from([("web".to_string(), 1i64)]);
    let d = route(RouteInput {
        lead: &lead(),
        directory: &dir,
        halts: &[halt("bob")],
        aways: &[],
        general_only: false,
        cursors: &cursors,
        listing_agent: None,
    });
    let plan = d.offer.as_ref().expect("offered, not assigned");
    assert_eq!(
        plan.candidates,
        ["bob", "cara", "jane"],
        "rotation order from the cursor"
    );
    assert_eq!(plan.referral_fee_percent, 25);
    assert_eq!(
        (d.owner.as_str(), d.user.as_str()),
        ("amy", "amy"),
        "held by the default owner"
    );
    assert_eq!(
        d.cursor().map(|c| c.after),
        Some(3),
        "past cara, the first available"
    );
    assert!(
        d.trace
            .skipped
            .iter()
            .any(|s| s.agent == "bob" && s.why.contains("halted"))
    );

    let everyone_out = route(RouteInput {
        lead: &lead(),
        directory: &dir,
        halts: &[],
        aways: &[away("jane", None), away("bob", None), away("cara", None)],
        general_only: false,
        cursors: &cursors,
        listing_agent: None,
    });
    assert!(
        everyone_out.offer.is_none(),
        "nobody to offer it to: next rule, then the default owner"
    );
    assert_eq!(everyone_out.user, "amy");
}

#[test]
fn offices_limit_a_rule_to_their_agents() {
    let mut dir = with_rules("[[brokerages.rules]]\nname = \"north\"\noffices = [\"north\"]");
    for (agent, office) in [("jane", "south"), ("bob", "North"), ("cara", "north")] {
        dir.agents
            .iter_mut()
            .find(|a| a.id == agent)
            .unwrap()
            .office = Some(office.into());
    }
    let mut cursors = HashMap::new();
    let mut users = Vec::new();
    for _ in 0..4 {
        let d = route(RouteInput {
            lead: &lead(),
            directory: &dir,
            halts: &[],
            aways: &[],
            general_only: false,
            cursors: &cursors,
            listing_agent: None,
        });
        if let Some(c) = d.cursor() {
            cursors.insert(c.pool.clone(), c.after);
        }
        users.push(d.user);
    }
    assert_eq!(users, ["bob", "cara", "bob", "cara"]);
}

#[test]
fn away_agents_are_skipped_and_their_direct_leads_delegated() {
    let dir = brokerage("");
    let mut l = lead();
    l.forwarded_by = Some("jane@acme.example".into());
    let input = |aways: &[Away]| {
        route(RouteInput {
            lead: &l,
            directory: &dir,
            halts: &[],
            aways,
            general_only: false,
            cursors: &HashMap::new(),
            listing_agent: None,
        })
    };
    let d = input(&[away("jane", Some("cara"))]);
    assert_eq!(
        (d.kind, d.owner.as_str(), d.user.as_str()),
        (RouteKind::Direct, "jane", "cara")
    );
    let d = input(&[away("jane", None)]);
    assert_eq!(d.user, "jane", "no delegate: it waits as hers");
    let general = route(RouteInput {
        lead: &lead(),
        directory: &dir,
        halts: &[],
        aways: &[away("jane", None)],
        general_only: false,
        cursors: &HashMap::new(),
        listing_agent: None,
    });
    assert_ne!(general.user, "jane");
}
