//! End-to-end routing scenarios through the CLI: a stream of leads against a
//! brokerage with rules and pools, halts and resumes, reassignment with
//! notes and permissions, imported listings, repeat inquiries.

mod common;

use common::Env;
use serde_json::Value;

const CONFIG: &str = r#"
[database]
url = "sqlite://data/leadmail.db"

[[brokerages]]
id = "acme"
name = "Acme Realty"
lead_addresses = ["leads@acmerealty.example"]
default_owner = "amy"

  [brokerages.routing]
  dedupe_window_days = 90

  [[brokerages.rules]]
  name = "zillow"
  sources = ["zillow"]
  pool = ["jane", "bob"]

  [[brokerages.rules]]
  name = "everyone else"
  pool = ["jane", "bob", "cara"]

  [[brokerages.agents]]
  id = "amy"
  name = "Amy Admin"
  emails = ["amy@acmerealty.example"]
  role = "admin"

  [[brokerages.agents]]
  id = "jane"
  name = "Jane Smith"
  emails = ["jane@acmerealty.example"]
  lead_addresses = ["jane.leads@acmerealty.example"]

  [[brokerages.agents]]
  id = "bob"
  name = "Bob Stone"
  emails = ["bob@acmerealty.example"]

  [[brokerages.agents]]
  id = "cara"
  name = "Cara Lee"
  emails = ["cara@acmerealty.example"]
"#;

/// A general lead from a website form; `n` makes the person and the message unique.
fn web_lead(env: &Env, n: u32) -> std::path::PathBuf {
    env.message(
        &format!("web{n}.eml"),
        &format!(
            "From: Site <noreply@site.example>\nTo: leads@acmerealty.example\nSubject: Inquiry\nMessage-ID: <web-{n}@site.example>\n\nName: Person {n}\nEmail: person{n}@example.com\nPhone: 555-010-{n:04}\n"
        ),
    )
}

fn zillow_lead(env: &Env, n: u32) -> std::path::PathBuf {
    env.message(
        &format!("z{n}.eml"),
        &format!(
            "From: \"Zed {n}\" <z{n}@convo.zillow.com>\nTo: leads@acmerealty.example\nSubject: Zed {n} is requesting information about {n} Oak St\nMessage-ID: <z-{n}@zillow.com>\n\nZed {n} says:\nHi\n"
        ),
    )
}

fn ingest(env: &Env, path: &std::path::Path) -> Value {
    env.ingest_json(&[path]).remove(0)
}

fn user(row: &Value) -> String {
    row["routing"]["user"].as_str().unwrap_or("").to_string()
}

#[test]
fn a_stream_of_leads_follows_rules_pools_and_halts() {
    let env = Env::with_config(CONFIG);
    // Two pools, each with its own rotation.
    let mut got = Vec::new();
    for n in 1..=3 {
        got.push(user(&ingest(&env, &zillow_lead(&env, n))));
        got.push(user(&ingest(&env, &web_lead(&env, n))));
    }
    assert_eq!(got, ["jane", "jane", "bob", "bob", "jane", "cara"]);

    // Bob goes on vacation: skipped in both pools, and keeps his place.
    env.ok(&[
        "agents", "halt", "acme/bob", "--reason", "vacation", "--by", "amy",
    ]);
    let listed = env.ok(&["agents", "list", "--format", "json"]);
    let bob: Value = listed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|a| a["id"] == "bob")
        .unwrap();
    assert_eq!(bob["halted"]["reason"], "vacation");
    assert_eq!(bob["halted"]["by"], "amy");

    let z = ingest(&env, &zillow_lead(&env, 4));
    assert_eq!(user(&z), "jane", "bob's zillow turn goes to jane");
    assert_eq!(user(&ingest(&env, &web_lead(&env, 4))), "jane");
    let w = ingest(&env, &web_lead(&env, 5));
    assert_eq!(user(&w), "cara", "bob's turn in the web pool is skipped");
    let trace = env.lead(w["lead_id"].as_i64().unwrap())["trace"].clone();
    assert_eq!(trace["skipped"][0]["agent"], "bob", "{trace}");
    assert_eq!(trace["rules"][0]["matched"], false);
    assert_eq!(trace["rules"][1]["matched"], true);

    // A direct lead still reaches him (halted_direct = deliver by default).
    let direct = env.message(
        "direct.eml",
        "From: Bob Stone <bob@acmerealty.example>\nTo: leads@acmerealty.example\nSubject: Fwd: lead\nMessage-ID: <bob-direct@x.example>\n\n---------- Forwarded message ---------\nFrom: Kim Park <kim.park@example.com>\nSubject: hi\n\nCall me 555-010-7070\n",
    );
    let d = ingest(&env, &direct);
    assert_eq!(
        (d["routing"]["kind"].as_str(), user(&d).as_str()),
        (Some("direct"), "bob")
    );

    env.ok(&["agents", "resume", "acme/bob", "--by", "amy"]);
    let next: Vec<String> = (6..=7)
        .map(|n| user(&ingest(&env, &web_lead(&env, n))))
        .collect();
    assert_eq!(next, ["jane", "bob"], "back in rotation, in his place");
}

#[test]
fn halts_need_an_admin_and_end_on_their_own() {
    let env = Env::with_config(CONFIG);
    let out = env.run(&[
        "agents", "halt", "acme/bob", "--reason", "x", "--by", "jane",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an admin"));

    // A halt that already ended is not in force.
    env.ok(&[
        "agents",
        "halt",
        "acme/jane",
        "--reason",
        "leave",
        "--until",
        "2020-01-01T00:00:00Z",
        "--by",
        "amy",
    ]);
    assert_eq!(user(&ingest(&env, &web_lead(&env, 1))), "jane");
    let out = env.run(&[
        "agents",
        "halt",
        "acme/jane",
        "--reason",
        "x",
        "--until",
        "soon",
        "--by",
        "amy",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

#[test]
fn every_agent_halted_falls_back_to_the_default_owner() {
    let env = Env::with_config(CONFIG);
    for a in ["jane", "bob", "cara"] {
        env.ok(&[
            "agents",
            "halt",
            &format!("acme/{a}"),
            "--reason",
            "offsite",
            "--by",
            "amy",
        ]);
    }
    let row = ingest(&env, &web_lead(&env, 1));
    assert_eq!(
        (row["routing"]["owner"].as_str(), user(&row).as_str()),
        (Some("amy"), "amy")
    );
}

#[test]
fn reassignment_needs_a_note_and_permission_and_is_recorded() {
    let env = Env::with_config(CONFIG);
    let row = ingest(&env, &web_lead(&env, 1));
    let id = row["lead_id"].as_i64().unwrap().to_string();
    assert_eq!(user(&row), "jane");

    let no_note = env.run(&["leads", "reassign", &id, "--user", "bob", "--by", "amy"]);
    assert!(!no_note.status.success());
    assert!(String::from_utf8_lossy(&no_note.stderr).contains("--note"));
    let empty_note = env.run(&[
        "leads", "reassign", &id, "--user", "bob", "--note", " ", "--by", "amy",
    ]);
    assert!(String::from_utf8_lossy(&empty_note.stderr).contains("note"));

    let stranger = env.run(&[
        "leads", "reassign", &id, "--user", "bob", "--note", "mine", "--by", "cara",
    ]);
    assert!(!stranger.status.success());
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("may not reassign"));

    // The owner may hand the work to a colleague; an admin may change the owner.
    env.ok(&[
        "leads",
        "reassign",
        &id,
        "--user",
        "bob",
        "--note",
        "Bob speaks Spanish",
        "--by",
        "jane",
    ]);
    env.ok(&[
        "leads",
        "reassign",
        &id,
        "--owner",
        "cara",
        "--note",
        "Jane left the team",
        "--by",
        "amy",
    ]);
    let lead = env.lead(id.parse().unwrap());
    assert_eq!(
        (lead["owner"].as_str(), lead["user"].as_str()),
        (Some("cara"), Some("bob"))
    );
    let history = lead["history"].as_array().unwrap();
    let changes: Vec<(&str, &str, &str, &str, &str)> = history
        .iter()
        .filter(|e| e["kind"] == "user_changed" || e["kind"] == "owner_changed")
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["from"].as_str().unwrap(),
                e["to"].as_str().unwrap(),
                e["note"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("user_changed", "jane", "jane", "bob", "Bob speaks Spanish"),
            ("owner_changed", "amy", "jane", "cara", "Jane left the team"),
        ]
    );
    // Manual changes do not disturb the rotation: the next lead is bob's turn.
    assert_eq!(user(&ingest(&env, &web_lead(&env, 2))), "bob");
}

#[test]
fn imported_listings_route_to_their_agent_by_address() {
    let env = Env::with_config(CONFIG);
    let csv = env.message(
        "listings.csv",
        "mls_number,address,agent\n26001111,\"731 Mulberry Street, Ann Arbor, MI 48103\",cara\n",
    );
    assert!(
        env.ok(&["listings", "import", "acme", csv.to_str().unwrap()])
            .contains("imported 1")
    );
    let msg = env.message(
        "listing.eml",
        "From: Portal <noreply@portal.example>\nTo: leads@acmerealty.example\nSubject: Inquiry\nMessage-ID: <l-1@portal.example>\n\nName: Lee Wong\nEmail: lee.wong@example.com\nProperty Address: 731 Mulberry St, Ann Arbor, MI 48103\n",
    );
    let row = ingest(&env, &msg);
    assert_eq!(
        (row["routing"]["kind"].as_str(), user(&row).as_str()),
        (Some("direct"), "cara")
    );
    assert!(
        row["routing"]["reason"]
            .as_str()
            .unwrap()
            .contains("listing")
    );

    let bad = env.message("bad.csv", "mls_number,address,agent\n1,2 St,nobody\n");
    let out = env.run(&["listings", "import", "acme", bad.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

#[test]
fn personal_lead_address_is_direct() {
    let env = Env::with_config(CONFIG);
    let msg = env.message(
        "personal.eml",
        "From: Ann <ann.lee@example.com>\nTo: jane.leads@acmerealty.example\nSubject: hi\nMessage-ID: <p-1@example.com>\n\nCall me at 555-010-1212\n",
    );
    // Brokerage found by --brokerage (the inbox would know); the personal address makes it direct.
    let out = env.ok(&[
        "ingest",
        "--format",
        "json",
        "--brokerage",
        "acme",
        msg.to_str().unwrap(),
    ]);
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        (row["routing"]["kind"].as_str(), user(&row).as_str()),
        (Some("direct"), "jane")
    );
}

#[test]
fn the_same_person_asking_again_is_a_repeat_not_a_new_lead() {
    let env = Env::with_config(CONFIG);
    let first = ingest(&env, &web_lead(&env, 1));
    let again = env.message(
        "again.eml",
        "From: Site <noreply@site.example>\nTo: leads@acmerealty.example\nSubject: Inquiry\nMessage-ID: <again-1@site.example>\n\nName: Person 1\nEmail: PERSON1@example.com\nMessage: Still interested!\n",
    );
    let row = ingest(&env, &again);
    assert_eq!(row["outcome"], "repeat");
    assert_eq!(row["lead_id"], first["lead_id"]);
    assert_eq!(env.leads().len(), 1);
    let lead = env.lead(first["lead_id"].as_i64().unwrap());
    assert_eq!(lead["user"], "jane", "owner and user stay");
    assert!(
        lead["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "repeat_inquiry")
    );
    // Same phone and name counts too.
    let by_phone = env.message(
        "phone.eml",
        "From: Site <noreply@site.example>\nTo: leads@acmerealty.example\nSubject: Inquiry\nMessage-ID: <again-2@site.example>\n\nName: person 1\nPhone: (555) 010-0001\n",
    );
    assert_eq!(ingest(&env, &by_phone)["outcome"], "repeat");
}

/// With `trust_forwarder = "authenticated"`, a forward that claims to come
/// from an agent earns direct credit only with a DKIM/DMARC pass recorded by
/// the brokerage's own server; a forged From (or a pass claimed by some other
/// host's header) is routed as general, and the trace says why.
#[test]
fn forged_agent_forwards_get_no_direct_credit() {
    let env = Env::with_config(&CONFIG.replace(
        "  dedupe_window_days = 90",
        "  dedupe_window_days = 90\n  trust_forwarder = \"authenticated\"\n  authserv_id = \"mx.acmerealty.example\"",
    ));
    let forward = |n: u32, auth: &str| {
        env.message(
            &format!("fwd{n}.eml"),
            &format!(
                "{auth}From: Jane Smith <jane@acmerealty.example>\nTo: leads@acmerealty.example\nSubject: Fwd: buyer\nMessage-ID: <fwd-{n}@acmerealty.example>\n\n---------- Forwarded message ---------\nFrom: Pat Buyer <pat{n}@example.com>\nSubject: house\n\nName: Pat Buyer\nEmail: pat{n}@example.com\nPhone: 555-010-77{n:02}\n"
            ),
        )
    };
    let forged = forward(
        1,
        "Authentication-Results: mx.acmerealty.example; dkim=fail; dmarc=fail header.from=acmerealty.example\n",
    );
    let planted = forward(
        2,
        "Authentication-Results: evil.example; dkim=pass header.d=acmerealty.example; dmarc=pass\n",
    );
    let genuine = forward(
        3,
        "Authentication-Results: mx.acmerealty.example; dkim=pass header.d=acmerealty.example; dmarc=pass header.from=acmerealty.example\n",
    );
    let rows = env.ingest_json(&[&forged, &planted, &genuine]);
    for row in &rows[..2] {
        assert_eq!(row["routing"]["kind"], "general", "{row}");
        let lead = env.lead(row["lead_id"].as_i64().unwrap());
        let trace = lead["trace"].to_string();
        assert!(trace.contains("no DKIM/DMARC pass"), "{trace}");
    }
    assert_eq!(rows[2]["routing"]["kind"], "direct");
    assert_eq!(rows[2]["routing"]["user"], "jane");
}
