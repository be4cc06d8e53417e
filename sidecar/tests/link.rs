//! The sidecar against a stand-in runtime: a command redelivered after the sidecar
//! restarts is answered with its first outcome, not executed again.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bosun_host::host::Services;
use bosun_host::limits::Limits;
use bosun_link::link_server::{Link, LinkServer};
use bosun_link::{
    Command, FetchChunk, FetchRequest, Outcome, RuntimeMessage, SidecarMessage, runtime_message,
    sidecar_message,
};
use bosun_sidecar::agents::Agents;
use bosun_sidecar::config::Token;
use bosun_sidecar::{Config, Sidecar};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Sends command 7 on every session and reports the outcomes it gets back.
struct Runtime {
    outcomes: mpsc::UnboundedSender<Outcome>,
}

#[tonic::async_trait]
impl Link for Runtime {
    type SessionStream = BoxStream<RuntimeMessage>;
    type FetchStream = BoxStream<FetchChunk>;

    async fn session(
        &self,
        request: Request<Streaming<SidecarMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let command = RuntimeMessage {
            body: Some(runtime_message::Body::Command(Command {
                id: 7,
                plugin: "agent".to_owned(),
                payload: "once".to_owned(),
            })),
        };
        tx.send(Ok(command))
            .await
            .map_err(|_| Status::internal("closed"))?;
        let outcomes = self.outcomes.clone();
        tokio::spawn(async move {
            // The stream to the sidecar lives as long as the sidecar's does.
            let _tx = tx;
            while let Ok(Some(m)) = inbound.message().await {
                if let Some(sidecar_message::Body::Outcome(o)) = m.body {
                    let _ = outcomes.send(o);
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch(
        &self,
        _request: Request<FetchRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

fn config(dir: &std::path::Path, port: u16) -> Config {
    let runtime = format!("http://127.0.0.1:{port}");
    let vars = [
        ("POD_NAMESPACE", "default"),
        ("POD_NAME", "p"),
        ("POD_UID", "u"),
        ("BOSUN_RUNTIME", runtime.as_str()),
        ("BOSUN_TOKEN", "t"),
        ("BOSUN_PROBE_ADDR", "127.0.0.1:0"),
        ("BOSUN_RECONNECT_MAX_MS", "200"),
    ];
    let mut c = Config::from_vars(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("config");
    c.shared_dir = dir.join("shared");
    c.data_dir = dir.join("data");
    c.token = Token::Value("t".to_owned());
    c
}

/// Puts the agent in the sidecar's cache and its last assignment, as a previous run would.
fn seed(dir: &std::path::Path) {
    let bytes = std::fs::read(bosun_test_artifacts::TEST_AGENT).expect("agent artifact");
    let digest = bosun_link::digest(&bytes);
    let engine = bosun_host::Engine::new(&bosun_host::engine::Config {
        pooling: false,
        ..Default::default()
    })
    .expect("engine");
    let agents = Arc::new(Agents::new(
        engine,
        Services::offline(),
        Limits::default(),
        dir.join("data/plugins"),
    ));
    agents.store("agent", &digest, &bytes).expect("store");
    let assigned =
        serde_json::json!([{"name": "agent", "digest": digest, "config": r#"{"tag":"t"}"#}]);
    std::fs::write(dir.join("data/assigned.json"), assigned.to_string()).expect("assigned");
}

async fn next(outcomes: &mut mpsc::UnboundedReceiver<Outcome>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(30), outcomes.recv())
        .await
        .expect("an outcome in time")
        .expect("runtime running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_redelivered_after_a_sidecar_restart_runs_once() {
    let dir = tempfile::tempdir().expect("tmp");
    seed(dir.path());
    let (tx, mut outcomes) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LinkServer::new(Runtime { outcomes: tx }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let first = Sidecar::start(config(dir.path(), port))
        .await
        .expect("start");
    let outcome = next(&mut outcomes).await;
    assert_eq!((outcome.id, outcome.ok), (7, true), "{outcome:?}");
    assert_eq!(outcome.message, "t:once");
    assert_eq!(first.executed(), 1);
    // Killed as a crash would: the outcome was recorded before it was reported.
    first.kill();

    let second = Sidecar::start(config(dir.path(), port))
        .await
        .expect("restart");
    let again = next(&mut outcomes).await;
    assert_eq!(again, outcome, "the first outcome, answered again");
    assert_eq!(second.executed(), 0, "not executed again");
    let log = std::fs::read_to_string(dir.path().join("shared/commands.log")).expect("log");
    assert_eq!(log, "once\n");
    second.kill();
    server.abort();
}
