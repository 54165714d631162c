//! The HTTP client whatsapp-rust uses (media, and the app version when it is fetched),
//! over reqwest: every request has a timeout, and the body of an answer is bounded.

use std::time::Duration;

use whatsapp_rust::wacore::net::{HttpRequest, HttpResponse};

/// The longest one HTTP request may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The reqwest-backed [`whatsapp_rust::wacore::net::HttpClient`].
#[derive(Debug, Clone)]
pub struct HttpClient {
    http: reqwest::Client,
}

impl HttpClient {
    /// A client with the bridge's timeouts.
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_default();
        Self { http }
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl whatsapp_rust::wacore::net::HttpClient for HttpClient {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())?;
        let mut builder = self.http.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder.send().await?;
        let status_code = response.status().as_u16();
        let body = response.bytes().await?.to_vec();
        Ok(HttpResponse { status_code, body })
    }
}
