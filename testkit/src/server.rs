//! The accept loop and the per-connection request loop.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use crate::behaviour::{perform, Exchange, Next};
use crate::control;
use crate::format::Format;
use crate::http::{head, Conn, Framing, Request};
use crate::record::{tenant_of, RecordedRequest, Registry};
use crate::replicate;

/// Accepts connections forever, each served on its own task.
pub(crate) async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, Arc::clone(&registry)));
            }
            // Out of descriptors, or a connection that died in the backlog.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn connection(stream: TcpStream, registry: Arc<Registry>) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(stream);
    loop {
        let req = match conn.read_request().await {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(_) => {
                let body =
                    br#"{"error":{"message":"malformed request","type":"invalid_request_error"}}"#;
                let mut bytes = head(
                    400,
                    "application/json",
                    Framing::Length(body.len() as u64),
                    &[],
                    true,
                );
                bytes.extend_from_slice(body);
                let _ = conn.write_all(&bytes).await;
                return;
            }
        };
        let next = if req.path.starts_with("/_") {
            control_request(&mut conn, &registry, &req).await
        } else {
            let tenant = tenant_of(&req.path).to_owned();
            conn.take_written();
            let next = exchange(&mut conn, &registry, req).await;
            registry.add_sent(&tenant, conn.take_written());
            next
        };
        if !matches!(next, Ok(Next::KeepAlive)) {
            return;
        }
    }
}

async fn control_request(
    conn: &mut Conn,
    registry: &Registry,
    req: &Request,
) -> std::io::Result<Next> {
    let (status, body) = control::handle(registry, req);
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let close = !req.keep_alive;
    let mut bytes = head(
        status,
        "application/json",
        Framing::Length(body.len() as u64),
        &[],
        close,
    );
    bytes.extend_from_slice(&body);
    conn.write_all(&bytes).await?;
    Ok(if close { Next::Close } else { Next::KeepAlive })
}

async fn exchange(conn: &mut Conn, registry: &Registry, req: Request) -> std::io::Result<Next> {
    let body = if req.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&req.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into_owned()))
    };
    let format = Format::from_path(&req.path);
    if format == Format::Replicate {
        if let Some(call) = replicate::Call::from_path(&req.method, &req.path) {
            return replicate::exchange(conn, registry, req, call, body).await;
        }
    }
    let ex = Exchange {
        format,
        prompt: format.prompt(&body, &req.path),
        tenant: tenant_of(&req.path).to_owned(),
        close: !req.keep_alive,
    };
    let reply = registry.arrive(RecordedRequest {
        method: req.method,
        path: req.path,
        headers: req.headers,
        body,
        raw_body: req.body,
    });
    perform(conn, &ex, reply).await
}
