//! The requests matrix-sdk-crypto asks for (key upload, query and claim, to-device sends,
//! signatures), sent through the bridge's [`MatrixClient`] as the bot's device.
//!
//! The crypto crate speaks ruma 0.16 while the rest of the bridge speaks 0.17, so the bodies
//! are written as JSON here and the answers parsed with the crypto crate's own ruma types.

use std::time::Duration;

use http::Method;
use matrix_sdk_crypto::types::requests::{AnyOutgoingRequest, ToDeviceRequest};
use ruma_crypto::api::{
    client::{
        keys::{claim_keys, get_keys, upload_keys, upload_signatures},
        message::send_message_event,
        to_device::send_event_to_device,
    },
    IncomingResponse,
};
use serde_json::{json, Map, Value};

use crate::matrix::{MatrixClient, MatrixError, RawRequest, RawResponse, SendOptions};

/// A parsed answer to one of the crypto machine's requests.
pub(super) enum Answer {
    Upload(upload_keys::v3::Response),
    Query(get_keys::v3::Response),
    Claim(claim_keys::v3::Response),
    ToDevice(send_event_to_device::v3::Response),
    Signatures(upload_signatures::v3::Response),
    RoomMessage(send_message_event::v3::Response),
}

fn path(segments: &[&str]) -> Vec<String> {
    ["_matrix", "client", "v3"].iter().chain(segments).map(|s| (*s).to_owned()).collect()
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, MatrixError> {
    serde_json::to_value(value).map_err(|e| MatrixError::InvalidRequest(e.to_string()))
}

fn parse<R: IncomingResponse>(response: RawResponse) -> Result<R, MatrixError> {
    let mut builder = http::Response::builder().status(response.status);
    if let Some(headers) = builder.headers_mut() {
        *headers = response.headers;
    }
    let http_response = builder.body(response.body.as_ref()).map_err(|e| MatrixError::Deserialize(e.to_string()))?;
    R::try_from_http_response(http_response).map_err(|e| MatrixError::Deserialize(e.to_string()))
}

/// Sends `body` as the bot's device (`?device_id=`, appservice device masquerading).
pub(super) async fn send_as_device(
    client: &MatrixClient,
    device_id: &str,
    method: Method,
    path: Vec<String>,
    body: &Value,
) -> Result<RawResponse, MatrixError> {
    let body = serde_json::to_vec(body).map_err(|e| MatrixError::InvalidRequest(e.to_string()))?;
    let request = RawRequest {
        method,
        path,
        // With the bot named explicitly: Synapse 1.163 answers 500 to a device masquerade
        // without `user_id`.
        query: vec![("user_id".to_owned(), client.bot().to_string()), ("device_id".to_owned(), device_id.to_owned())],
        content_type: Some("application/json".to_owned()),
        body: body.into(),
    };
    client.send_raw(request, None, SendOptions::default()).await
}

/// A to-device send (`PUT /sendToDevice/{type}/{txn}`).
pub(super) async fn send_to_device(client: &MatrixClient, device_id: &str, request: &ToDeviceRequest) -> Result<send_event_to_device::v3::Response, MatrixError> {
    let body = json!({ "messages": to_json(&request.messages)? });
    let event_type = request.event_type.to_string();
    let target = path(&["sendToDevice", &event_type, request.txn_id.as_str()]);
            let response = send_as_device(client, device_id, Method::PUT, target, &body).await?;
    parse(response)
}

/// Sends one of the machine's outgoing requests and parses the answer.
pub(super) async fn send(client: &MatrixClient, device_id: &str, request: &AnyOutgoingRequest) -> Result<Answer, MatrixError> {
    let timeout = |t: Option<Duration>| t.map(|t| json!(t.as_millis() as u64));
    Ok(match request {
        AnyOutgoingRequest::KeysUpload(upload) => {
            let mut body = Map::new();
            if let Some(keys) = &upload.device_keys {
                body.insert("device_keys".into(), to_json(keys)?);
            }
            if !upload.one_time_keys.is_empty() {
                body.insert("one_time_keys".into(), to_json(&upload.one_time_keys)?);
            }
            if !upload.fallback_keys.is_empty() {
                body.insert("fallback_keys".into(), to_json(&upload.fallback_keys)?);
            }
            let target = path(&["keys", "upload"]);
            let response = send_as_device(client, device_id, Method::POST, target, &Value::Object(body)).await?;
            Answer::Upload(parse(response)?)
        }
        AnyOutgoingRequest::KeysQuery(query) => {
            let mut body = json!({ "device_keys": to_json(&query.device_keys)? });
            if let Some(t) = timeout(query.timeout) {
                body["timeout"] = t;
            }
            let target = path(&["keys", "query"]);
            let response = send_as_device(client, device_id, Method::POST, target, &body).await?;
            Answer::Query(parse(response)?)
        }
        AnyOutgoingRequest::KeysClaim(claim) => {
            let mut body = json!({ "one_time_keys": to_json(&claim.one_time_keys)? });
            if let Some(t) = timeout(claim.timeout) {
                body["timeout"] = t;
            }
            let target = path(&["keys", "claim"]);
            let response = send_as_device(client, device_id, Method::POST, target, &body).await?;
            Answer::Claim(parse(response)?)
        }
        AnyOutgoingRequest::ToDeviceRequest(to_device) => Answer::ToDevice(send_to_device(client, device_id, to_device).await?),
        AnyOutgoingRequest::SignatureUpload(signatures) => {
            let body = to_json(&signatures.signed_keys)?;
            let target = path(&["keys", "signatures", "upload"]);
            let response = send_as_device(client, device_id, Method::POST, target, &body).await?;
            Answer::Signatures(parse(response)?)
        }
        AnyOutgoingRequest::RoomMessage(message) => {
            use ruma_crypto::events::MessageLikeEventContent as _;
            let event_type = message.content.event_type().to_string();
            let body = to_json(&message.content)?;
            let target = path(&["rooms", message.room_id.as_str(), "send", &event_type, message.txn_id.as_str()]);
            let response = send_as_device(client, device_id, Method::PUT, target, &body).await?;
            Answer::RoomMessage(parse(response)?)
        }
    })
}
