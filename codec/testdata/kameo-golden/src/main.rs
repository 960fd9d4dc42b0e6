// Golden vectors for esmill's compatibility with kameo_es: CBOR payloads of
// externally tagged serde enums, and the metadata envelope with the same
// field names and serde attributes as kameo_es's Metadata<T> and
// EventCausation (flattened causation, every part optional).
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use uuid::Uuid;

#[derive(Serialize, Deserialize)]
enum BankAccountEvent {
    Opened { owner: String },
    MoneyDeposited { amount: u32 },
    MoneyWithdrawn { amount: u32 },
    Closed,
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

#[derive(Serialize, Deserialize)]
struct Tenant {
    tenant: String,
    user_id: u64,
}

fn cbor<T: Serialize>(v: &T) -> String {
    let mut buf = Vec::new();
    ciborium::into_writer(v, &mut buf).unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
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
    ];
    println!("{{");
    for (i, (name, hex)) in vectors.iter().enumerate() {
        let comma = if i + 1 < vectors.len() { "," } else { "" };
        println!("  \"{name}\": \"{hex}\"{comma}");
    }
    println!("}}");
}
