//! ADF (Auto-lead Data Format) XML: `<adf><prospect><customer><contact>`,
//! as the whole text body or as an attachment such as `lead.xml`. The
//! automotive `<vehicle>` element is optional here; `<vendor>` and
//! `<provider>` contacts are the recipient and the sender, never the lead.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::extracted::Extracted;
use super::{ParseOptions, normalize};

/// Extracts the customer from the first ADF document among `documents`.
pub fn extract<'a>(
    documents: impl IntoIterator<Item = &'a str>,
    options: &ParseOptions,
) -> Extracted {
    documents
        .into_iter()
        .find_map(|doc| {
            let start = doc.find("<adf")?;
            Some(parse_adf(&doc[start..], options))
        })
        .unwrap_or_default()
}

#[derive(Default)]
struct Customer {
    first: Option<String>,
    last: Option<String>,
    full: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    comments: Option<String>,
    street: Vec<String>,
    city: Option<String>,
    region: Option<String>,
    postal: Option<String>,
    provider: Option<String>,
    price: Option<String>,
    mls: Option<String>,
}

fn parse_adf(xml: &str, options: &ParseOptions) -> Extracted {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut name_part: Option<String> = None;
    let mut c = Customer::default();
    // Bounded: a hostile document cannot keep us here longer than its length.
    for _ in 0..100_000 {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let tag = String::from_utf8_lossy(e.local_name().as_ref()).to_ascii_lowercase();
                if tag == "name" {
                    name_part = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref().eq_ignore_ascii_case(b"part"))
                        .map(|a| String::from_utf8_lossy(&a.value).to_ascii_lowercase());
                }
                path.push(tag);
            }
            Ok(Event::End(_)) => {
                path.pop();
            }
            Ok(Event::Text(t)) => {
                let text = t
                    .xml10_content()
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                if !text.is_empty() {
                    take_text(&path, name_part.as_deref(), text, &mut c);
                }
            }
            Ok(Event::CData(t)) => {
                let text = String::from_utf8_lossy(&t).trim().to_string();
                if !text.is_empty() {
                    take_text(&path, name_part.as_deref(), text, &mut c);
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let name = c
        .full
        .as_deref()
        .and_then(normalize::name)
        .or_else(|| normalize::full_name(c.first.as_deref(), c.last.as_deref()));
    let locality = [c.region.as_deref(), c.postal.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let address = (!c.street.is_empty()).then(|| {
        let mut lines = c.street.clone();
        lines.extend(c.city.clone());
        if !locality.is_empty() {
            lines.push(locality);
        }
        lines.join(", ")
    });
    Extracted {
        source: c.provider.map(|p| p.to_ascii_lowercase()),
        name,
        email: c
            .email
            .and_then(|e| super::fields::find_emails(&e).into_iter().next()),
        phone: c
            .phone
            .and_then(|p| normalize::phone(&p, options.default_region)),
        address,
        mls_number: c.mls.as_deref().and_then(normalize::mls_number),
        price: c.price.as_deref().and_then(normalize::price),
        message: c.comments,
        ..Extracted::default()
    }
}

fn take_text(path: &[String], part: Option<&str>, text: String, c: &mut Customer) {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let within = |needle: &[&str]| p.windows(needle.len()).any(|w| w == needle);
    let last = p.last().copied().unwrap_or("");
    if within(&["customer", "contact"]) {
        match last {
            "name" => match part {
                Some("first") => c.first = Some(text),
                Some("last") => c.last = Some(text),
                _ => c.full = Some(text),
            },
            "email" if c.email.is_none() => c.email = Some(text),
            "phone" if c.phone.is_none() => c.phone = Some(text),
            "street" => c.street.push(text),
            "city" => c.city = Some(text),
            "regioncode" => c.region = Some(text),
            "postalcode" => c.postal = Some(text),
            _ => {}
        }
    } else if within(&["customer", "comments"]) || (within(&["prospect"]) && last == "comments") {
        c.comments.get_or_insert(text);
    } else if within(&["provider"]) && last == "name" {
        c.provider.get_or_insert(text);
    } else if within(&["prospect"]) && (last == "price" || last == "listprice") {
        c.price.get_or_insert(text);
    } else if within(&["prospect"]) && (last == "mls" || last == "mlsnumber" || last == "mlsid") {
        c.mls.get_or_insert(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADF: &str = r#"<?xml version="1.0"?>
<?adf version="1.0"?>
<adf><prospect>
  <requestdate>2026-11-20T10:00:00-05:00</requestdate>
  <customer>
    <contact>
      <name part="first">Wen</name><name part="last">Zhao</name>
      <email>wen.zhao@example.com</email>
      <phone type="voice">555-010-3030</phone>
    </contact>
    <comments><![CDATA[Looking for a ranch home & a big yard.]]></comments>
  </customer>
  <vendor><contact><name part="full">Acme Realty</name><email>leads@acmerealty.example</email></contact></vendor>
  <provider><name part="full">HomeFinder</name><email>noreply@homefinder.example</email></provider>
</prospect></adf>"#;

    #[test]
    fn customer_contact_is_the_lead_and_vendor_is_not() {
        let e = extract([ADF], &ParseOptions::default());
        assert_eq!(e.name.as_deref(), Some("Wen Zhao"));
        assert_eq!(e.email.as_deref(), Some("wen.zhao@example.com"));
        assert_eq!(e.phone.as_deref(), Some("+15550103030"));
        assert_eq!(
            e.message.as_deref(),
            Some("Looking for a ranch home & a big yard.")
        );
        assert_eq!(e.source.as_deref(), Some("homefinder"));
    }

    #[test]
    fn broken_xml_yields_what_was_read() {
        let e = extract(
            ["<adf><prospect><customer><contact><email>a@example.com</email><name"],
            &ParseOptions::default(),
        );
        assert_eq!(e.email.as_deref(), Some("a@example.com"));
        assert_eq!(
            extract(["no xml here"], &ParseOptions::default()),
            Extracted::default()
        );
    }
}
