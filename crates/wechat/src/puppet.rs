//! The gRPC client of the Wechaty puppet service: the generated protocol types, the
//! `authorization: Wechaty <token>` interceptor, TLS, and [`Puppet`], a typed wrapper with a
//! timeout on every call and errors mapped to [`PuppetError`].

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::config::TlsConfig;

/// The protocol types generated from `proto/` by `build.rs`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    /// Package `wechaty`: the `Puppet` service.
    pub mod wechaty {
        tonic::include_proto!("wechaty");
        /// Package `wechaty.puppet`: the messages.
        pub mod puppet {
            tonic::include_proto!("wechaty.puppet");
        }
    }
    pub use wechaty::puppet::*;
}

use proto::wechaty::puppet_client::PuppetClient;
use proto::*;

/// Size of the data chunks sent in file streams (`Upload` and the older chunk stream).
const CHUNK_SIZE: usize = 64 * 1024;

/// Largest file accepted from a file stream (`Download` or the older chunk streams).
const MAX_FILE: usize = 100 * 1024 * 1024;

/// A failed puppet service call, by cause.
#[derive(Debug, thiserror::Error)]
pub enum PuppetError {
    /// The endpoint in the config or session is not a usable URL.
    #[error("invalid WeChat service address {0:?}")]
    InvalidEndpoint(String),
    /// The TLS settings could not be applied.
    #[error("tls setup failed: {0}")]
    Tls(String),
    /// The token was rejected.
    #[error("the WeChat service rejected the token")]
    Unauthenticated,
    /// Another client holds the puppet's event stream.
    #[error("the WeChat service is in use by another connection")]
    StreamBusy,
    /// The service could not be reached.
    #[error("the WeChat service is unavailable: {0}")]
    Unavailable(String),
    /// The call took longer than the configured timeout.
    #[error("the WeChat service did not answer {0} in time")]
    Timeout(&'static str),
    /// The service answered with an error (the first line of its message).
    #[error("the WeChat service failed {call}: {message}")]
    Remote {
        /// The call that failed.
        call: &'static str,
        /// The service's message, first line only (services send JavaScript stack traces).
        message: String,
    },
    /// The answer was not what the protocol promises.
    #[error("unexpected answer from the WeChat service: {0}")]
    BadAnswer(String),
    /// The service does not implement this call (an older puppet service).
    #[error("the WeChat service does not support {0}")]
    Unimplemented(&'static str),
}

impl PuppetError {
    pub(crate) fn from_status(call: &'static str, status: &tonic::Status) -> Self {
        match status.code() {
            tonic::Code::Unauthenticated => Self::Unauthenticated,
            tonic::Code::AlreadyExists => Self::StreamBusy,
            tonic::Code::Unavailable | tonic::Code::Cancelled => Self::Unavailable(first_line(status.message())),
            tonic::Code::Unimplemented => Self::Unimplemented(call),
            _ => Self::Remote { call, message: first_line(status.message()) },
        }
    }

    /// Whether retrying later may help (the service is away or busy), as opposed to a
    /// rejected token or a bad request.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout(_) | Self::StreamBusy)
    }
}

impl From<PuppetError> for bridge_core::network::NetworkError {
    fn from(error: PuppetError) -> Self {
        match error {
            PuppetError::Unauthenticated => Self::NotLoggedIn,
            other => Self::Remote(other.to_string()),
        }
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().chars().take(300).collect()
}

/// Adds `authorization: Wechaty <token>` to every request.
#[derive(Clone)]
pub struct Auth {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// Where a puppet service is and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct PuppetTarget {
    /// `http://host:port` or `https://host:port`.
    pub endpoint: String,
    /// The service token.
    pub token: String,
    /// TLS options for `https://` endpoints.
    pub tls: TlsConfig,
}

impl std::fmt::Debug for PuppetTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PuppetTarget").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

/// A connection to one puppet service. Cheap to clone; reconnects by itself when the
/// service comes back.
#[derive(Clone)]
pub struct Puppet {
    client: PuppetClient<InterceptedService<Channel, Auth>>,
    timeout: Duration,
}

impl Puppet {
    /// Builds a client for `target` without connecting yet; every call times out after `timeout`.
    pub fn new(target: &PuppetTarget, timeout: Duration) -> Result<Self, PuppetError> {
        let invalid = || PuppetError::InvalidEndpoint(target.endpoint.clone());
        let uri: http::Uri = target.endpoint.parse().map_err(|_| invalid())?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(invalid()),
        };
        let mut endpoint = Endpoint::from_shared(target.endpoint.clone())
            .map_err(|_| invalid())?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if tls {
            let mut config = ClientTlsConfig::new().with_webpki_roots();
            if let Some(name) = &target.tls.server_name {
                config = config.domain_name(name.clone());
            }
            if let Some(file) = &target.tls.ca_file {
                let pem = std::fs::read(file).map_err(|e| PuppetError::Tls(format!("read {file}: {e}")))?;
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(config).map_err(|e| PuppetError::Tls(e.to_string()))?;
        }
        let header = if target.token.is_empty() {
            None
        } else {
            let value = format!("Wechaty {}", target.token);
            Some(value.parse().map_err(|_| PuppetError::BadAnswer("the token is not valid in a header".to_owned()))?)
        };
        let channel = endpoint.connect_lazy();
        Ok(Self { client: PuppetClient::with_interceptor(channel, Auth { header }), timeout })
    }

    /// Runs one unary call with the timeout, mapping its status.
    async fn unary<T, F>(&self, call: &'static str, future: F) -> Result<T, PuppetError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout, future).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(PuppetError::from_status(call, &status)),
            Err(_) => Err(PuppetError::Timeout(call)),
        }
    }

    /// Starts the puppet (resumes its session, or makes it emit SCAN). Harmless when started.
    pub async fn start(&self) -> Result<(), PuppetError> {
        self.unary("Start", self.client.clone().start(StartRequest {})).await.map(drop)
    }

    /// Stops the puppet. Some puppets (the mock) log the account out when stopped.
    pub async fn stop(&self) -> Result<(), PuppetError> {
        self.unary("Stop", self.client.clone().stop(StopRequest {})).await.map(drop)
    }

    /// Logs the account out of WeChat.
    pub async fn logout(&self) -> Result<(), PuppetError> {
        self.unary("Logout", self.client.clone().logout(LogoutRequest {})).await.map(drop)
    }

    /// Pings the puppet; it answers with a DONG event carrying `data`.
    pub async fn ding(&self, data: &str) -> Result<(), PuppetError> {
        self.unary("Ding", self.client.clone().ding(DingRequest { data: data.to_owned() })).await.map(drop)
    }

    /// The service's version.
    pub async fn version(&self) -> Result<String, PuppetError> {
        Ok(self.unary("Version", self.client.clone().version(VersionRequest {})).await?.version)
    }

    /// Opens the event stream (only one may be open per puppet).
    pub async fn events(&self) -> Result<tonic::Streaming<EventResponse>, PuppetError> {
        self.unary("Event", self.client.clone().event(EventRequest {})).await
    }

    /// A contact's payload.
    pub async fn contact(&self, id: &str) -> Result<ContactPayloadResponse, PuppetError> {
        self.unary("ContactPayload", self.client.clone().contact_payload(ContactPayloadRequest { id: id.to_owned() }))
            .await
    }

    /// A room's payload.
    pub async fn room(&self, id: &str) -> Result<RoomPayloadResponse, PuppetError> {
        self.unary("RoomPayload", self.client.clone().room_payload(RoomPayloadRequest { id: id.to_owned() })).await
    }

    /// The ids of a room's members.
    pub async fn room_members(&self, id: &str) -> Result<Vec<String>, PuppetError> {
        let request = RoomMemberListRequest { id: id.to_owned() };
        Ok(self.unary("RoomMemberList", self.client.clone().room_member_list(request)).await?.member_ids)
    }

    /// One member of a room, with their room alias.
    pub async fn room_member(&self, room: &str, member: &str) -> Result<RoomMemberPayloadResponse, PuppetError> {
        let request = RoomMemberPayloadRequest { id: room.to_owned(), member_id: member.to_owned() };
        self.unary("RoomMemberPayload", self.client.clone().room_member_payload(request)).await
    }

    /// A message's payload.
    pub async fn message(&self, id: &str) -> Result<MessagePayloadResponse, PuppetError> {
        self.unary("MessagePayload", self.client.clone().message_payload(MessagePayloadRequest { id: id.to_owned() }))
            .await
    }

    /// Sends a text (mentioning `mentions` in a room) and returns the new message's id
    /// (empty if the puppet gives none).
    pub async fn send_text(&self, conversation: &str, text: &str, mentions: Vec<String>) -> Result<String, PuppetError> {
        let request =
            MessageSendTextRequest { conversation_id: conversation.to_owned(), text: text.to_owned(), mentional_ids: mentions };
        Ok(self.unary("MessageSendText", self.client.clone().message_send_text(request)).await?.id)
    }

    /// Sends a file and returns the new message's id (may be empty). As the 1.x protocol
    /// wants: a small file inline in a file box, a large one first stored on the service
    /// with `Upload` and sent as a UUID file box; a service without those calls gets the
    /// file through the older chunk stream.
    pub async fn send_file(&self, conversation: &str, name: &str, data: Bytes) -> Result<String, PuppetError> {
        let file_box = if data.len() <= crate::file_box::INLINE_MAX {
            Ok(crate::file_box::inline_json(name, &data))
        } else {
            self.upload(data.clone()).await.map(|uuid| crate::file_box::uuid_json(name, &uuid, data.len()))
        };
        let sent = match file_box {
            Ok(file_box) => {
                let request = MessageSendFileRequest { conversation_id: conversation.to_owned(), file_box };
                // Large files get more time than ordinary calls.
                match tokio::time::timeout(self.timeout * 4, self.client.clone().message_send_file(request)).await {
                    Ok(Ok(response)) => Ok(response.into_inner().id),
                    Ok(Err(status)) => Err(PuppetError::from_status("MessageSendFile", &status)),
                    Err(_) => Err(PuppetError::Timeout("MessageSendFile")),
                }
            }
            Err(error) => Err(error),
        };
        match sent {
            Err(PuppetError::Unimplemented(call)) => {
                tracing::debug!(call, "falling back to the file chunk stream");
                self.send_file_stream(conversation, name, data).await
            }
            other => other,
        }
    }

    /// Sends a file through the (deprecated) chunk stream.
    async fn send_file_stream(&self, conversation: &str, name: &str, data: Bytes) -> Result<String, PuppetError> {
        let mut requests = vec![
            MessageSendFileStreamRequest { conversation_id: Some(conversation.to_owned()), file_box_chunk: None },
            MessageSendFileStreamRequest {
                conversation_id: None,
                file_box_chunk: Some(FileBoxChunk { data: None, name: Some(name.to_owned()) }),
            },
        ];
        for chunk in data.chunks(CHUNK_SIZE) {
            requests.push(MessageSendFileStreamRequest {
                conversation_id: None,
                file_box_chunk: Some(FileBoxChunk { data: Some(chunk.to_vec()), name: None }),
            });
        }
        let stream = futures::stream::iter(requests);
        let mut client = self.client.clone();
        let call = client.message_send_file_stream(stream);
        match tokio::time::timeout(self.timeout * 4, call).await {
            Ok(Ok(response)) => Ok(response.into_inner().id),
            Ok(Err(status)) => Err(PuppetError::from_status("MessageSendFileStream", &status)),
            Err(_) => Err(PuppetError::Timeout("MessageSendFileStream")),
        }
    }

    /// Stores `data` on the service (`Upload`) and returns its UUID, for a UUID file box.
    pub async fn upload(&self, data: Bytes) -> Result<String, PuppetError> {
        let chunks: Vec<UploadRequest> = data.chunks(CHUNK_SIZE).map(|c| UploadRequest { chunk: c.to_vec() }).collect();
        let mut client = self.client.clone();
        let call = client.upload(futures::stream::iter(chunks));
        let id = match tokio::time::timeout(self.timeout * 4, call).await {
            Ok(Ok(response)) => response.into_inner().id,
            Ok(Err(status)) => return Err(PuppetError::from_status("Upload", &status)),
            Err(_) => return Err(PuppetError::Timeout("Upload")),
        };
        if id.is_empty() {
            return Err(PuppetError::BadAnswer("Upload returned no UUID".to_owned()));
        }
        Ok(id)
    }

    /// Reads a file the service stores under `uuid` (`Download`).
    pub async fn download(&self, uuid: &str) -> Result<Bytes, PuppetError> {
        let call = "Download";
        let work = async {
            let request = DownloadRequest { id: uuid.to_owned() };
            let mut client = self.client.clone();
            let mut stream = client.download(request).await.map_err(|s| PuppetError::from_status(call, &s))?.into_inner();
            let mut data = BytesMut::new();
            while let Some(item) = stream.next().await {
                let chunk = item.map_err(|s| PuppetError::from_status(call, &s))?.chunk;
                if data.len() + chunk.len() > MAX_FILE {
                    return Err(PuppetError::BadAnswer("file larger than 100 MiB".to_owned()));
                }
                data.extend_from_slice(&chunk);
            }
            Ok(data.freeze())
        };
        match tokio::time::timeout(self.timeout * 4, work).await {
            Ok(result) => result,
            Err(_) => Err(PuppetError::Timeout(call)),
        }
    }

    /// A message's file as a serialized file box (`MessageFile`; empty if none).
    pub async fn message_file_box(&self, id: &str) -> Result<String, PuppetError> {
        let request = MessageFileRequest { id: id.to_owned() };
        Ok(self.unary("MessageFile", self.client.clone().message_file(request)).await?.file_box)
    }

    /// Downloads a message's file (or its HD image with `image`) through the (deprecated)
    /// chunk stream; returns its name and bytes.
    pub async fn message_file_stream(&self, id: &str, image: bool) -> Result<(String, Bytes), PuppetError> {
        let call = "MessageFileStream";
        let work = async {
            let chunks = if image {
                let request = MessageImageStreamRequest { id: id.to_owned(), r#type: ImageType::Hd as i32 };
                let stream = self.client.clone().message_image_stream(request).await;
                stream.map_err(|s| PuppetError::from_status(call, &s))?.into_inner().map(|r| r.map(|r| r.file_box_chunk)).boxed()
            } else {
                let request = MessageFileStreamRequest { id: id.to_owned() };
                let stream = self.client.clone().message_file_stream(request).await;
                stream.map_err(|s| PuppetError::from_status(call, &s))?.into_inner().map(|r| r.map(|r| r.file_box_chunk)).boxed()
            };
            collect_file(chunks).await
        };
        match tokio::time::timeout(self.timeout * 4, work).await {
            Ok(result) => result,
            Err(_) => Err(PuppetError::Timeout(call)),
        }
    }

    /// A link message's card.
    pub async fn url_link(&self, id: &str) -> Result<UrlLinkPayload, PuppetError> {
        let request = MessageUrlRequest { id: id.to_owned() };
        let response = self.unary("MessageUrl", self.client.clone().message_url(request)).await?;
        response.url_link.ok_or_else(|| PuppetError::BadAnswer("a link message without its card".to_owned()))
    }

    /// A mini-program message's card.
    pub async fn mini_program(&self, id: &str) -> Result<MiniProgramPayload, PuppetError> {
        let request = MessageMiniProgramRequest { id: id.to_owned() };
        let response = self.unary("MessageMiniProgram", self.client.clone().message_mini_program(request)).await?;
        response.mini_program.ok_or_else(|| PuppetError::BadAnswer("a mini-program message without its card".to_owned()))
    }

    /// The id of the contact a contact card shares (empty if the puppet does not know).
    pub async fn shared_contact(&self, id: &str) -> Result<String, PuppetError> {
        let request = MessageContactRequest { id: id.to_owned() };
        Ok(self.unary("MessageContact", self.client.clone().message_contact(request)).await?.id)
    }

    /// A location message's place.
    pub async fn location(&self, id: &str) -> Result<LocationPayload, PuppetError> {
        let request = MessageLocationRequest { id: id.to_owned() };
        let response = self.unary("MessageLocation", self.client.clone().message_location(request)).await?;
        response.location.ok_or_else(|| PuppetError::BadAnswer("a location message without its place".to_owned()))
    }

    /// A contact's avatar as a serialized file box (JSON; empty when there is none).
    pub async fn contact_avatar(&self, id: &str) -> Result<String, PuppetError> {
        let request = ContactAvatarRequest { id: id.to_owned(), file_box: None };
        Ok(self.unary("ContactAvatar", self.client.clone().contact_avatar(request)).await?.file_box)
    }

    /// A room's avatar as a serialized file box (JSON; empty when there is none).
    pub async fn room_avatar(&self, id: &str) -> Result<String, PuppetError> {
        let request = RoomAvatarRequest { id: id.to_owned() };
        Ok(self.unary("RoomAvatar", self.client.clone().room_avatar(request)).await?.file_box)
    }

    /// Recalls a message this account sent; `false` if the puppet refused.
    pub async fn recall(&self, id: &str) -> Result<bool, PuppetError> {
        let request = MessageRecallRequest { id: id.to_owned() };
        Ok(self.unary("MessageRecall", self.client.clone().message_recall(request)).await?.success)
    }
}

/// Reads a chunk stream: a name chunk, then data chunks.
async fn collect_file(
    mut chunks: futures::stream::BoxStream<'_, Result<Option<FileBoxChunk>, tonic::Status>>,
) -> Result<(String, Bytes), PuppetError> {
    let mut name = String::new();
    let mut data = BytesMut::new();
    while let Some(item) = chunks.next().await {
        let chunk = item.map_err(|s| PuppetError::from_status("MessageFileStream", &s))?;
        let Some(chunk) = chunk else { continue };
        if let Some(n) = chunk.name {
            name = n;
        }
        if let Some(bytes) = chunk.data {
            if data.len() + bytes.len() > MAX_FILE {
                return Err(PuppetError::BadAnswer("file larger than 100 MiB".to_owned()));
            }
            data.extend_from_slice(&bytes);
        }
    }
    Ok((name, data.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: &str) -> PuppetTarget {
        PuppetTarget { endpoint: endpoint.to_owned(), token: "t".to_owned(), tls: TlsConfig::default() }
    }

    #[tokio::test]
    async fn endpoints_must_be_http_or_https_urls() {
        for (endpoint, ok) in
            [("http://127.0.0.1:8788", true), ("https://puppet.example:443", true), ("127.0.0.1:8788", false), ("", false)]
        {
            assert_eq!(Puppet::new(&target(endpoint), Duration::from_secs(1)).is_ok(), ok, "{endpoint}");
        }
    }

    #[test]
    fn statuses_map_to_causes() {
        let cases = [
            (tonic::Status::unauthenticated("bad"), "the WeChat service rejected the token"),
            (tonic::Status::already_exists("twice"), "the WeChat service is in use by another connection"),
            (tonic::Status::unknown("Error: boom\n    at foo.js:1"), "the WeChat service failed X: Error: boom"),
        ];
        for (status, text) in cases {
            assert_eq!(PuppetError::from_status("X", &status).to_string(), text);
        }
    }

    #[test]
    fn debug_of_a_target_hides_the_token() {
        let text = format!("{:?}", target("http://h:1"));
        assert!(!text.contains("\"t\""), "{text}");
    }
}
