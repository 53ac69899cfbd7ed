//! A small HTTP/1 client over hyper, shared by the admin CLI, `dop bench`
//! and the tests: JSON in, status and JSON out.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client as HyperClient},
    rt::TokioExecutor,
};

/// A response: status, headers and body.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response is not JSON: {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Default for Client {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl Client {
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build(connector);
        Self { inner, timeout }
    }

    /// Sends a request; `body` is sent as JSON when given, unless `headers`
    /// name a content type (an empty one sends none).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Response> {
        let mut req = Request::builder().method(method).uri(url);
        let own_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !own_type {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            if !v.is_empty() {
                req = req.header(*k, *v);
            }
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .with_context(|| format!("bad request to {url}"))?;
        let resp = tokio::time::timeout(self.timeout, self.inner.request(req))
            .await
            .with_context(|| format!("{url} did not answer within {:?}", self.timeout))?
            .with_context(|| format!("could not reach {url}"))?;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(self.timeout, body.collect())
            .await
            .with_context(|| format!("{url} did not finish its answer"))?
            .with_context(|| format!("reading the answer of {url}"))?
            .to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&self, url: &str) -> anyhow::Result<Response> {
        self.send(Method::GET, url, None, &[]).await
    }

    pub async fn post_json(&self, url: &str, body: &serde_json::Value) -> anyhow::Result<Response> {
        self.send(Method::POST, url, Some(Bytes::from(body.to_string())), &[])
            .await
    }

    pub async fn put_json(&self, url: &str, body: &serde_json::Value) -> anyhow::Result<Response> {
        self.send(Method::PUT, url, Some(Bytes::from(body.to_string())), &[])
            .await
    }
}
