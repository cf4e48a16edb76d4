//! The whole local stack in one value: the emulator (unless one is already running), the
//! table as template.yaml declares it, and the API server on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::emulator::{Emulator, default_server_path};
use super::provision::ensure_table;
use super::server::LocalApi;
use super::template::Template;
use crate::config::Config;
use crate::state::AppState;

/// A prepared local stack, ready to serve.
pub struct LocalStack {
    /// The emulator this stack started; `None` when `AWS_ENDPOINT_URL` named one.
    emulator: Option<Emulator>,
    api: Arc<LocalApi>,
    listener: TcpListener,
    address: SocketAddr,
}

impl LocalStack {
    /// Starts the emulator if needed, creates the table if missing and binds the API's port
    /// (`config.local.port`; 0 picks a free one). `progress` hears each step.
    pub async fn prepare(mut config: Config, progress: impl Fn(&str)) -> Result<Self, String> {
        let template = Template::built_in()?;
        let emulator = match &config.aws_endpoint_url {
            Some(endpoint) => {
                progress(&format!("using the AWS endpoint {endpoint}"));
                None
            }
            None => {
                let port = config.local.emulator_port;
                progress(&format!(
                    "starting the local AWS emulator on 127.0.0.1:{port}"
                ));
                let emulator = Emulator::start(&default_server_path(), port)?;
                config.aws_endpoint_url = Some(emulator.endpoint().to_string());
                Some(emulator)
            }
        };
        let state = Arc::new(AppState::new(config).await);
        let created =
            ensure_table(state.store.client(), &template, state.store.table_name()).await?;
        progress(&format!(
            "table {} {}",
            state.store.table_name(),
            if created {
                "created from template.yaml"
            } else {
                "already exists"
            }
        ));
        let api = Arc::new(LocalApi::new(state, &template)?);
        let port = api.state().config.local.port;
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            format!("cannot listen on 127.0.0.1:{port}: {e} (set PORT to another port)")
        })?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        Ok(LocalStack {
            emulator,
            api,
            listener,
            address,
        })
    }

    pub fn state(&self) -> &AppState {
        self.api.state()
    }

    /// The API's base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The AWS endpoint the stack uses.
    pub fn aws_endpoint(&self) -> Option<&str> {
        self.state().config.aws_endpoint_url.as_deref()
    }

    /// Serves until `shutdown` completes, then stops the emulator it started.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let LocalStack {
            emulator,
            api,
            listener,
            ..
        } = self;
        api.serve(listener, shutdown).await;
        drop(emulator);
    }
}
