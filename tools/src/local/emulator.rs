//! The local AWS emulator: moto's server mode, installed by `make` into the repo's ignored
//! `.venv/`, started on loopback and stopped when this handle is dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running emulator; dropping it stops the process.
pub struct Emulator {
    child: Child,
    endpoint: String,
}

/// Where `make` installs the emulator: `<repo>/.venv/bin/webhooks-emulator` (moto's server
/// with atomic DynamoDB requests, `scripts/emulator.py`).
pub fn default_server_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(".venv")
        .join("bin")
        .join("webhooks-emulator")
}

/// Where the emulator the local stack starts writes its log (each denied call among it).
pub fn default_log_path() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize()
        .unwrap_or(root)
        .join("target")
        .join("emulator.log")
}

impl Emulator {
    /// Starts the emulator on `127.0.0.1:port` and waits until it answers.
    pub fn start(server: &Path, port: u16) -> Result<Self, String> {
        if !server.exists() {
            return Err(format!(
                "the local AWS emulator is not installed at {}; run `make emulator` (or `make run`) first",
                server.display()
            ));
        }
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Err(format!(
                "port {port} is already in use: stop what runs there, choose EMULATOR_PORT, \
                 or point AWS_ENDPOINT_URL at an emulator that is already running"
            ));
        }
        let log_path = default_log_path();
        let log = log_path
            .parent()
            .map(std::fs::create_dir_all)
            .and_then(|_| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .ok()
            });
        let (out, err) = match log
            .as_ref()
            .and_then(|f| Some((f.try_clone().ok()?, f.try_clone().ok()?)))
        {
            Some((out, err)) => (Stdio::from(out), Stdio::from(err)),
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", server.display()))?;
        let mut emulator = Emulator {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = emulator.child.try_wait() {
                return Err(format!("the emulator exited at start: {status}"));
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(emulator);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("the emulator did not start listening within 30 s".into())
    }

    /// The endpoint to hand the AWS SDK (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
