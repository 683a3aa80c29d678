//! Reading `Authentication-Results` (RFC 8601) to decide whether a message
//! that claims to come from an agent really does: a DKIM or DMARC pass for
//! the agent's domain, as recorded by the brokerage's own mail server.

/// Whether the results show `dkim=pass` (signing domain = `domain`) or
/// `dmarc=pass` (From domain = `domain`). With `authserv_id`, only headers
/// from that server count; without it, only the topmost header (the one the
/// receiving server added; anything below may come from the sender).
pub fn sender_authenticated(results: &[String], authserv_id: Option<&str>, domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    let trusted: Vec<&String> = match authserv_id {
        Some(id) => results
            .iter()
            .filter(|r| server_of(r).eq_ignore_ascii_case(id))
            .collect(),
        None => results.first().into_iter().collect(),
    };
    trusted.iter().any(|r| {
        r.split(';').skip(1).any(|clause| {
            let c = clause.trim().to_ascii_lowercase();
            let tokens: Vec<&str> = c.split_whitespace().collect();
            let pass = |method: &str| tokens.first() == Some(&format!("{method}=pass").as_str());
            let has = |prop: &str| {
                tokens.iter().any(|t| {
                    t.strip_prefix(prop)
                        .map(|v| v.trim_start_matches('@'))
                        .is_some_and(|v| v == domain || v.ends_with(&format!("@{domain}")))
                })
            };
            (pass("dkim") && (has("header.d=") || has("header.i=")))
                || (pass("dmarc") && has("header.from="))
        })
    })
}

/// The authserv-id: the first token of the header value.
fn server_of(result: &str) -> &str {
    result
        .split(';')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Vec<String> {
        vec![s.to_string()]
    }

    #[test]
    fn dkim_or_dmarc_pass_for_the_domain() {
        let ok = r(
            "mx.acme.example; spf=pass smtp.mailfrom=acme.example; dkim=pass header.d=acme.example header.s=s1",
        );
        assert!(sender_authenticated(&ok, None, "acme.example"));
        let dmarc = r("mx.acme.example; dmarc=pass (p=reject) header.from=acme.example");
        assert!(sender_authenticated(
            &dmarc,
            Some("mx.acme.example"),
            "acme.example"
        ));
    }

    #[test]
    fn failures_other_domains_and_other_servers_do_not_count() {
        let fail = r(
            "mx.acme.example; dkim=fail header.d=acme.example; dmarc=fail header.from=acme.example",
        );
        assert!(!sender_authenticated(&fail, None, "acme.example"));
        let other = r("mx.acme.example; dkim=pass header.d=evil.example");
        assert!(!sender_authenticated(&other, None, "acme.example"));
        let forged = r("attacker.example; dkim=pass header.d=acme.example");
        assert!(!sender_authenticated(
            &forged,
            Some("mx.acme.example"),
            "acme.example"
        ));
        // Without an authserv-id, a lower (sender-supplied) header is not trusted.
        let stacked = vec![
            "mx.acme.example; dkim=none".to_string(),
            "mx.acme.example; dkim=pass header.d=acme.example".to_string(),
        ];
        assert!(!sender_authenticated(&stacked, None, "acme.example"));
        assert!(!sender_authenticated(&[], None, "acme.example"));
    }
}
