//! Lead offers end to end through the CLI: offered leads are stored at once
//! with no user, accept makes the agent owner and user, decline and expiry
//! hand over, a full pass goes to the default owner, all-at-once accepts
//! race and exactly one wins, out-of-office agents are skipped and their
//! direct leads delegated, and a direct offer nobody takes goes general.

mod common;

use std::time::Duration;

use common::Env;
use serde_json::Value;

fn config(extra_routing: &str, mode: &str, period: &str) -> String {
    format!(
        r#"
[[brokerages]]
id = "acme"
name = "Acme Realty"
lead_addresses = ["leads@acmerealty.example"]
default_owner = "amy"

  [brokerages.routing]
  dedupe_window_days = 0
  {extra_routing}

  [[brokerages.rules]]
  name = "website buyers"
  sources = ["generic"]
  assign = "offer"
  pool = ["bob", "cara", "eve", "dan"]
  offices = ["north"]
  offer_mode = "{mode}"
  acceptance_period = "{period}"
  referral_fee_percent = 25

  [[brokerages.agents]]
  id = "amy"
  name = "Amy Admin"
  role = "admin"
  emails = ["amy@acmerealty.example"]
  [[brokerages.agents]]
  id = "bob"
  name = "Bob"
  office = "north"
  emails = ["bob@acmerealty.example"]
  [[brokerages.agents]]
  id = "cara"
  name = "Cara"
  office = "north"
  emails = ["cara@acmerealty.example"]
  [[brokerages.agents]]
  id = "eve"
  name = "Eve"
  office = "North"
  emails = ["eve@acmerealty.example"]
  [[brokerages.agents]]
  id = "dan"
  name = "Dan"
  office = "south"
  emails = ["dan@acmerealty.example"]
"#
    )
}

fn web_lead(env: &Env, n: u32) -> std::path::PathBuf {
    env.message(
        &format!("web{n}.eml"),
        &format!(
            "From: Site <noreply@site.example>\nTo: leads@acmerealty.example\nSubject: Inquiry\nMessage-ID: <offer-{n}@site.example>\n\nName: Person {n}\nEmail: person{n}@example.com\nPhone: 555-010-{n:04}\nProperty: {n} Oak St, Ann Arbor, MI 48103\n"
        ),
    )
}

fn offers(env: &Env, all: bool) -> Vec<Value> {
    let mut args = vec!["offers", "list", "--format", "json"];
    if all {
        args.push("--all");
    }
    common::json_lines(env.ok(&args).as_bytes())
}

fn open_offer_of(env: &Env, lead: i64) -> Vec<Value> {
    offers(env, false)
        .into_iter()
        .filter(|o| o["lead_id"] == lead)
        .collect()
}

fn act(env: &Env, verb: &str, offer: &Value, by: &str) -> std::process::Output {
    env.run(&["offers", verb, &offer["id"].to_string(), "--by", by])
}

fn ingest_one(env: &Env, n: u32) -> i64 {
    let rows = env.ingest_json(&[&web_lead(env, n)]);
    assert_eq!(rows[0]["outcome"], "created", "{}", rows[0]);
    rows[0]["lead_id"].as_i64().unwrap()
}

#[test]
fn one_at_a_time_accept_decline_and_full_pass() {
    let env = Env::with_config(&config("", "one_at_a_time", "15m"));
    let lead = ingest_one(&env, 1);

    // Stored at once: offered, held by the default owner, no user.
    let l = env.lead(lead);
    assert_eq!(l["status"], "offered");
    assert_eq!(l["owner"], "amy");
    assert_eq!(l["user"], "");
    let open = open_offer_of(&env, lead);
    assert_eq!(open.len(), 1, "one at a time");
    assert_eq!(open[0]["agent"], "bob", "the rotation starts at bob");
    assert_eq!(open[0]["mode"], "one_at_a_time");

    // Someone else cannot act on bob's offer.
    let out = act(&env, "accept", &open[0], "cara");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is for bob"));

    // Bob declines: cara gets it (dan is in the pool but in another office).
    assert!(act(&env, "decline", &open[0], "bob").status.success());
    let open = open_offer_of(&env, lead);
    assert_eq!(open[0]["agent"], "cara");
    // Cara accepts: owner and user, referral fee recorded.
    let out = act(&env, "accept", &open[0], "cara");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let l = env.lead(lead);
    assert_eq!(
        (
            l["status"].as_str(),
            l["owner"].as_str(),
            l["user"].as_str()
        ),
        (Some("assigned"), Some("cara"), Some("cara"))
    );
    assert_eq!(l["referral_fee_percent"], 25);
    // A second click: refused, nothing changes.
    let again = act(&env, "accept", &open[0], "cara");
    assert_eq!(again.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no longer open"));
    let kinds: Vec<String> = l["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect();
    for k in ["offered", "declined", "accepted"] {
        assert!(kinds.contains(&k.to_string()), "{k} in {kinds:?}");
    }

    // The rotation moved on: the next lead is offered to cara first... then a
    // full pass of declines lands it with the default owner.
    let lead2 = ingest_one(&env, 2);
    let first = open_offer_of(&env, lead2);
    assert_eq!(first[0]["agent"], "cara", "the cursor moved past bob");
    for agent in ["cara", "eve", "bob"] {
        let open = open_offer_of(&env, lead2);
        assert_eq!(open[0]["agent"], agent);
        assert!(act(&env, "decline", &open[0], agent).status.success());
    }
    let l = env.lead(lead2);
    assert_eq!(
        (l["owner"].as_str(), l["user"].as_str()),
        (Some("amy"), Some("amy"))
    );
    assert!(l["history"].to_string().contains("no one accepted"));

    // The dashboard: who is next, today's leads, time to accept.
    let board: Value = serde_json::from_str(
        env.ok(&["dashboard", "--format", "json"])
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(board["pools"][0]["rule"], "website buyers");
    assert_eq!(
        board["pools"][0]["next"], "eve",
        "bob, then cara went first"
    );
    assert_eq!(board["today"]["total"], 2);
    assert_eq!(board["today"]["by_agent"]["cara"], 1);
    assert_eq!(board["today"]["by_agent"]["amy"], 1);
    assert!(board["median_seconds_to_accept"].is_i64(), "{board}");
    assert_eq!(board["open_offers"].as_array().unwrap().len(), 0);
    assert!(env.ok(&["dashboard"]).contains("Up next"));
}

/// `leadmail run` moves expired offers within seconds, with no inbox
/// configured, across a restart, and with two instances on one database
/// exactly one moves each offer.
#[test]
fn the_daemon_hands_expired_offers_on_across_restarts_and_instances() {
    let env = Env::with_config(&config("", "one_at_a_time", "2s"));
    assert!(env.run(&["migrate"]).status.success());
    let lead = ingest_one(&env, 30);
    assert_eq!(open_offer_of(&env, lead)[0]["agent"], "bob");
    let mut first = env.spawn_run();
    let mut second = env.spawn_run();
    common::wait_until(
        "bob's offer expires to cara",
        Duration::from_secs(10),
        || {
            open_offer_of(&env, lead)
                .first()
                .is_some_and(|o| o["agent"] == "cara")
        },
    );
    // A restart in the middle: the deadline lives in the database.
    let _ = first.kill();
    let _ = first.wait();
    let mut third = env.spawn_run();
    common::wait_until("a full pass", Duration::from_secs(20), || {
        env.lead(lead)["status"] == "assigned"
    });
    for c in [&mut second, &mut third] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let l = env.lead(lead);
    assert_eq!(l["owner"], "amy", "no one accepted");
    let decided: Vec<Value> = offers(&env, true)
        .into_iter()
        .filter(|o| o["lead_id"] == lead)
        .collect();
    let agents: Vec<&str> = decided
        .iter()
        .rev()
        .map(|o| o["agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["bob", "cara", "eve"], "each offered once, in turn");
    assert!(decided.iter().all(|o| o["state"] == "expired"));
    let expiries = l["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "expired")
        .count();
    assert_eq!(expiries, 3, "each offer expired exactly once");
}

#[test]
fn all_at_once_exactly_one_accept_wins_a_race() {
    let env = Env::with_config(&config("", "all_at_once", "15m"));
    for round in 0..5 {
        let lead = ingest_one(&env, 10 + round);
        let open = open_offer_of(&env, lead);
        assert_eq!(open.len(), 3, "bob, cara and eve at once: {open:?}");
        // Everyone clicks at the same moment.
        let children: Vec<_> = open
            .iter()
            .map(|o| {
                common::bin()
                    .arg("--config")
                    .arg(&env.config)
                    .args(["offers", "accept", &o["id"].to_string(), "--by"])
                    .arg(o["agent"].as_str().unwrap())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let wins = children
            .into_iter()
            .map(|mut c| c.wait().unwrap())
            .filter(|s| s.success())
            .count();
        assert_eq!(wins, 1, "exactly one accept wins");
        let l = env.lead(lead);
        let owner = l["owner"].as_str().unwrap().to_string();
        let decided: Vec<Value> = offers(&env, true)
            .into_iter()
            .filter(|o| o["lead_id"] == lead)
            .collect();
        for o in &decided {
            let expected = if o["agent"] == owner.as_str() {
                "accepted"
            } else {
                "taken"
            };
            assert_eq!(o["state"], expected, "{o}");
        }
    }
}

#[test]
fn expired_offers_move_on_when_run_and_away_agents_are_skipped() {
    let env = Env::with_config(&config("", "one_at_a_time", "1s"));
    // Bob is out of office: skipped, and cara is offered first.
    let out = env.run(&["agents", "away", "acme/bob", "--delegate", "cara"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lead = ingest_one(&env, 20);
    assert_eq!(open_offer_of(&env, lead)[0]["agent"], "cara");
    // Past the deadline, a run hands it to eve (bob still away).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(env.run(&["run", "--once"]).status.success());
    let open = open_offer_of(&env, lead);
    assert_eq!(open[0]["agent"], "eve");
    let history = env.lead(lead)["history"].to_string();
    assert!(history.contains("expired"), "{history}");
    // Only the agent or an admin may change an out-of-office.
    let out = env.run(&["agents", "back", "acme/bob", "--by", "cara"]);
    assert!(!out.status.success());
    assert!(
        env.run(&["agents", "back", "acme/bob", "--by", "amy"])
            .status
            .success()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(env.run(&["run", "--once"]).status.success());
    assert_eq!(
        open_offer_of(&env, lead)[0]["agent"],
        "bob",
        "back in the rotation"
    );
}

#[test]
fn away_agents_direct_leads_go_to_their_delegate() {
    let env = Env::with_config(&config("", "one_at_a_time", "15m"));
    assert!(
        env.run(&["agents", "away", "acme/bob", "--delegate", "cara"])
            .status
            .success()
    );
    let fwd = env.message(
        "fwd.eml",
        "From: Bob <bob@acmerealty.example>\nTo: leads@acmerealty.example\nSubject: Fwd: buyer\nMessage-ID: <fwd-away@acmerealty.example>\n\n---------- Forwarded message ---------\nFrom: Pat <pat@example.com>\nSubject: hi\n\nName: Pat Buyer\nEmail: pat@example.com\n",
    );
    let rows = env.ingest_json(&[&fwd]);
    assert_eq!(rows[0]["routing"]["kind"], "direct");
    assert_eq!(rows[0]["routing"]["owner"], "bob", "bob keeps it");
    assert_eq!(rows[0]["routing"]["user"], "cara", "cara works it");
    assert!(
        rows[0]["routing"]["reason"]
            .as_str()
            .unwrap()
            .contains("out of office")
    );
    let history = env.lead(rows[0]["lead_id"].as_i64().unwrap())["history"].clone();
    let delegated = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "delegated")
        .cloned()
        .expect("a delegated event");
    assert_eq!(delegated["actor"], "bob", "bob set the out of office");
    assert_eq!(delegated["to"], "cara");
}

#[test]
fn a_direct_offer_nobody_accepts_goes_to_the_general_rules() {
    let env = Env::with_config(&config(
        "direct_auto_accept = false\n  direct_period = \"1s\"",
        "one_at_a_time",
        "15m",
    ));
    let fwd = env.message(
        "fwd.eml",
        "From: Dan <dan@acmerealty.example>\nTo: leads@acmerealty.example\nSubject: Fwd: buyer\nMessage-ID: <fwd-direct@acmerealty.example>\n\n---------- Forwarded message ---------\nFrom: Pat <pat@example.com>\nSubject: hi\n\nName: Pat Direct\nEmail: pat.direct@example.com\n",
    );
    let rows = env.ingest_json(&[&fwd]);
    let lead = rows[0]["lead_id"].as_i64().unwrap();
    let open = open_offer_of(&env, lead);
    assert_eq!(open[0]["agent"], "dan", "offered to its own agent first");
    assert_eq!(open[0]["rule"], "direct");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(env.run(&["run", "--once"]).status.success());
    // Now offered by the general rule, to its rotation.
    let open = open_offer_of(&env, lead);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["rule"], "website buyers");
    assert_eq!(open[0]["agent"], "bob");
}
