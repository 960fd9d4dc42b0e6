// Golden vectors for esmill's compatibility with kameo_es: CBOR payloads of
// externally tagged serde enums, and the metadata envelope with the same
// field names and serde attributes as kameo_es's Metadata<T> and
// EventCausation (flattened causation, every part optional).
//
// It also writes the stored forms of old event shapes that esmill's
// upcasting tests read (module `history`), and the metadata envelope with
// esmill's extension keys (cid, cmid, esv, tp, tst) as serde writes it, and
// checks that kameo_es's own Metadata<T> reads it.
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use uuid::Uuid;

#[derive(Serialize, Deserialize)]
enum BankAccountEvent {
    Opened { owner: String },
    MoneyDeposited { amount: u32 },
    MoneyWithdrawn { amount: u32 },
    // A field-less struct variant, as kameo_es's own examples declare
    // events without data: serde writes {"Frozen": {}}.
    Frozen {},
    // A unit variant: serde writes the bare name.
    Closed,
}

// Shapes of events as they were stored in the past: what kameo_es (or an
// older esmill) wrote before the current event types existed.
mod history {
    use serde::Serialize;

    // Version 1 of Opened is BankAccountEvent::Opened. Version 2 added a
    // currency; version 3 (the current one in the Go tests) renamed owner
    // to holder and added an overdraft limit.
    #[derive(Serialize)]
    pub enum V2 {
        Opened { owner: String, currency: String },
    }

    #[derive(Serialize)]
    pub enum V3 {
        Opened { holder: String, currency: String, overdraft: i64 },
    }

    // An event that was renamed: MoneyAdded is MoneyDeposited's old name.
    #[derive(Serialize)]
    pub enum Renamed {
        MoneyAdded { amount: u32 },
    }

    // esmill before field-less struct variants wrote an event type
    // without fields as a unit variant, the bare name.
    #[derive(Serialize)]
    pub enum OldEsmill {
        Frozen,
    }
}

// kameo_es's Metadata<T> with esmill's extension keys after it, in the
// order esmill writes them. kameo_es ignores the extra keys.
#[derive(Serialize, Default)]
#[serde(default)]
struct EsmillMetadata<T> {
    #[serde(rename = "ccmd", skip_serializing_if = "Option::is_none")]
    causation_command: Option<Cow<'static, str>>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    causation_event: Option<EventCausation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
    #[serde(rename = "cid", skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(rename = "cmid", skip_serializing_if = "Option::is_none")]
    command_id: Option<String>,
    #[serde(rename = "esv", skip_serializing_if = "Option::is_none")]
    event_version: Option<u32>,
    #[serde(rename = "tp", skip_serializing_if = "Option::is_none")]
    trace_parent: Option<String>,
    #[serde(rename = "tst", skip_serializing_if = "Option::is_none")]
    trace_state: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct EventCausation {
    #[serde(rename = "ceid")]
    event_id: Uuid,
    #[serde(rename = "csid")]
    stream_id: String,
    #[serde(rename = "csv")]
    stream_version: u64,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct Metadata<T> {
    #[serde(rename = "ccmd", skip_serializing_if = "Option::is_none")]
    causation_command: Option<Cow<'static, str>>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    causation_event: Option<EventCausation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

#[derive(Serialize, Deserialize, Default)]
struct Tenant {
    tenant: String,
    user_id: u64,
}

fn cbor<T: Serialize>(v: &T) -> String {
    let mut buf = Vec::new();
    ciborium::into_writer(v, &mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn decodes(hex: &str) -> Result<BankAccountEvent, String> {
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    ciborium::from_reader(bytes.as_slice()).map_err(|e| e.to_string())
}

// What serde reads, checked on every run: a field-less struct variant
// reads only the map form (the bare name fails), while a unit variant
// reads both. This is why esmill writes an event type without fields as
// the map form unless the type is marked as a unit variant.
fn check_reads(vectors: &[(&str, String)]) {
    let get = |name: &str| vectors.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    assert!(matches!(decodes(&get("payload_frozen")), Ok(BankAccountEvent::Frozen {})));
    let bare = decodes(&get("payload_frozen_unit"));
    assert!(bare.is_err(), "serde read a bare name as a struct variant");
    eprintln!("serde reading \"Frozen\" as Frozen {{}}: {}", bare.err().unwrap());
    assert!(matches!(decodes(&get("payload_closed")), Ok(BankAccountEvent::Closed)));
    let map = decodes("a166436c6f736564a0"); // {"Closed": {}}
    assert!(matches!(map, Ok(BankAccountEvent::Closed)), "serde did not read {{\"Closed\": {{}}}} as a unit variant");
    // kameo_es's Metadata<T> reads esmill's envelope with the trace keys,
    // ignoring them.
    let bytes = hex_decode(&get("metadata_esmill_traced"));
    let m: Metadata<Tenant> = ciborium::from_reader(bytes.as_slice()).expect("kameo_es's Metadata reads the traced envelope");
    assert_eq!(m.causation_command.as_deref(), Some("Withdraw"));
    assert_eq!(m.data.expect("data").user_id, 42);
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn main() {
    let causation = || EventCausation {
        event_id: Uuid::parse_str("01a22828-aa2f-1837-be1f-60b713af75d4").unwrap(),
        stream_id: "transfer-t1".to_string(),
        stream_version: 7,
    };
    let vectors: Vec<(&str, String)> = vec![
        ("payload_opened", cbor(&BankAccountEvent::Opened { owner: "alice".into() })),
        ("payload_deposited", cbor(&BankAccountEvent::MoneyDeposited { amount: 100 })),
        ("payload_withdrawn", cbor(&BankAccountEvent::MoneyWithdrawn { amount: 4294967295 })),
        ("payload_closed", cbor(&BankAccountEvent::Closed)),
        ("payload_frozen", cbor(&BankAccountEvent::Frozen {})),
        ("payload_frozen_unit", cbor(&history::OldEsmill::Frozen)),
        (
            "payload_opened_v2",
            cbor(&history::V2::Opened { owner: "alice".into(), currency: "USD".into() }),
        ),
        (
            "payload_opened_v3",
            cbor(&history::V3::Opened { holder: "alice".into(), currency: "USD".into(), overdraft: -500 }),
        ),
        ("payload_money_added", cbor(&history::Renamed::MoneyAdded { amount: 250 })),
        (
            "metadata_command_only",
            cbor(&Metadata::<()> { causation_command: Some("Deposit".into()), causation_event: None, data: None }),
        ),
        (
            "metadata_caused",
            cbor(&Metadata::<()> {
                causation_command: Some("Deposit".into()),
                causation_event: Some(causation()),
                data: None,
            }),
        ),
        (
            "metadata_caused_with_data",
            cbor(&Metadata::<Tenant> {
                causation_command: Some("Withdraw".into()),
                causation_event: Some(causation()),
                data: Some(Tenant { tenant: "acme".into(), user_id: 42 }),
            }),
        ),
        (
            "metadata_data_only",
            cbor(&Metadata::<Tenant> {
                causation_command: None,
                causation_event: None,
                data: Some(Tenant { tenant: "acme".into(), user_id: 42 }),
            }),
        ),
        (
            "metadata_esmill_v2",
            cbor(&EsmillMetadata::<()> {
                causation_command: Some("Open".into()),
                command_id: Some("msg-1".into()),
                event_version: Some(2),
                ..Default::default()
            }),
        ),
        (
            "metadata_esmill_v3",
            cbor(&EsmillMetadata::<()> {
                causation_command: Some("Open".into()),
                command_id: Some("msg-1".into()),
                event_version: Some(3),
                ..Default::default()
            }),
        ),
        (
            "metadata_esmill_v4",
            cbor(&EsmillMetadata::<()> {
                causation_command: Some("Open".into()),
                command_id: Some("msg-1".into()),
                event_version: Some(4),
                ..Default::default()
            }),
        ),
        (
            "metadata_esmill_full",
            cbor(&EsmillMetadata::<Tenant> {
                causation_command: Some("Withdraw".into()),
                causation_event: Some(causation()),
                data: Some(Tenant { tenant: "acme".into(), user_id: 42 }),
                correlation_id: Some("conv-1".into()),
                command_id: Some("msg-9".into()),
                event_version: Some(2),
                ..Default::default()
            }),
        ),
        (
            "metadata_esmill_traced",
            cbor(&EsmillMetadata::<Tenant> {
                causation_command: Some("Withdraw".into()),
                causation_event: Some(causation()),
                data: Some(Tenant { tenant: "acme".into(), user_id: 42 }),
                correlation_id: Some("conv-1".into()),
                command_id: Some("msg-9".into()),
                trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
                trace_state: Some("vendor=x".into()),
                ..Default::default()
            }),
        ),
    ];
    check_reads(&vectors);
    println!("{{");
    for (i, (name, hex)) in vectors.iter().enumerate() {
        let comma = if i + 1 < vectors.len() { "," } else { "" };
        println!("  \"{name}\": \"{hex}\"{comma}");
    }
    println!("}}");
}
