//! The server: HTTP/1.1 (hyper) on 127.0.0.1, on a thread of its own with its own
//! runtime, so sync tests (that spawn the CLI) and async ones use it alike.

use crate::{Part, Reply};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When its body had been read (the bench measures time to first delta from here).
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }
}

#[derive(Default)]
struct State {
    replies: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
    /// Response bodies the client stopped reading before the end (it went away).
    abandoned: AtomicUsize,
    /// Response bodies sent to the end.
    finished: AtomicUsize,
    open_connections: AtomicUsize,
}

/// The running server; stops when dropped.
pub struct FakeProvider {
    addr: std::net::SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeProvider {
    /// Starts the server on a free port of 127.0.0.1.
    pub fn spawn() -> FakeProvider {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State::default());
        let (stop, stopped) = oneshot::channel();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("fake-provider".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(serve(listener, st, stopped));
            })
            .expect("server thread");
        FakeProvider {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`: the `base_url` of an `anthropic` model.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1`: the `base_url` of an `openai` model.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a reply: requests are answered in the order replies were pushed (an
    /// unscripted request gets a 500 saying so).
    pub fn push(&self, reply: Reply) {
        self.state.replies.lock().unwrap().push_back(reply);
    }

    /// Replies not used yet.
    pub fn pending(&self) -> usize {
        self.state.replies.lock().unwrap().len()
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Response bodies whose client went away before their end.
    pub fn abandoned(&self) -> usize {
        self.state.abandoned.load(Ordering::SeqCst)
    }

    /// Response bodies sent to their end.
    pub fn finished(&self) -> usize {
        self.state.finished.load(Ordering::SeqCst)
    }

    pub fn open_connections(&self) -> usize {
        self.state.open_connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = &mut stop => return,
        };
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        st.open_connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req| handle(req, st.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            st.open_connections.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<ChannelBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    state.received.lock().unwrap().push(Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: std::time::Instant::now(),
    });
    let reply = state.replies.lock().unwrap().pop_front();
    let reply = reply.unwrap_or_else(|| {
        Reply::error(
            500,
            serde_json::json!({"error": {"message": "the fake provider has no reply scripted for this request", "type": "server_error"}}),
        )
    });
    if !reply.first_byte_delay.is_zero() {
        tokio::time::sleep(reply.first_byte_delay).await;
    }
    // Capacity 1: the writer learns at its next chunk that the client went away.
    let (tx, rx) = mpsc::channel(1);
    let st = state.clone();
    let (parts_to_send, drop_after) = (reply.parts, reply.drop_after);
    tokio::spawn(async move {
        for part in parts_to_send {
            match part {
                Part::Pause(d) => tokio::time::sleep(d).await,
                Part::Bytes(b) => {
                    if tx.send(Ok(Bytes::from(b))).await.is_err() {
                        st.abandoned.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
        }
        if drop_after {
            let _ = tx
                .send(Err(std::io::Error::other("connection dropped on purpose")))
                .await;
            return;
        }
        // The body ends when the sender goes.
        drop(tx);
        st.finished.fetch_add(1, Ordering::SeqCst);
    });
    let mut response = Response::builder().status(reply.status);
    for (n, v) in &reply.headers {
        response = response.header(n, v);
    }
    Ok(response.body(ChannelBody { rx }).expect("a valid response"))
}

/// A response body fed by the writer task.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|r| r.map(Frame::data)))
    }
}
