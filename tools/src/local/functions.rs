//! Every function of template.yaml as the local stack runs it: its template settings and a
//! state of its own, whose AWS clients act as the function's own principal.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use shared::config::Config;
use shared::state::{AppState, Connection};

use super::principals::{
    PrincipalError, Resolver, function_policy, make_principal, principal_name,
};
use super::template::{FunctionSpec, Template};

/// One function: what the template says of it, and its state.
pub struct Function {
    pub spec: FunctionSpec,
    pub state: Arc<AppState>,
    /// Its principal's ARN on the emulator (`None` where IAM is not enforced).
    pub principal: Option<String>,
}

/// The template's functions, by binary.
pub struct Functions {
    by_binary: HashMap<String, Function>,
    /// Whether the emulator enforces each function's permissions.
    pub enforced: bool,
}

impl Functions {
    /// Makes each function's principal (its template policy, resolved) on the emulator and
    /// a state acting as it. An emulator that enforces nothing (not this project's) gets
    /// one administrator state for all, and `enforced` says so.
    pub async fn start(
        template: &Template,
        config: &Config,
        resolver: &Resolver,
        prefix: &str,
    ) -> Result<Functions, String> {
        let endpoint = config.aws_endpoint_url.clone().unwrap_or_default();
        let http = shared::tls::http_client();
        let specs = template.functions()?;
        let made = join_all(specs.iter().map(|spec| {
            let (http, endpoint) = (&http, &endpoint);
            async move {
                let policy = function_policy(template, spec, resolver)?;
                let name = principal_name(prefix, spec);
                match make_principal(http, endpoint, &name, &policy).await {
                    Ok(principal) => Ok(Some(principal)),
                    Err(PrincipalError::NotEnforced) => Ok(None),
                    Err(PrincipalError::Failed(why)) => Err(why),
                }
            }
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, String>>()?;
        let enforced = made.iter().all(Option::is_some);
        let states = join_all(made.iter().map(|principal| {
            let connection = Connection {
                credentials: principal
                    .as_ref()
                    .filter(|_| enforced)
                    .map(|p| p.credentials.clone()),
                ..Connection::default()
            };
            AppState::connect(config.clone(), connection)
        }))
        .await;
        let by_binary = specs
            .into_iter()
            .zip(made)
            .zip(states)
            .map(|((spec, principal), state)| {
                let function = Function {
                    state: Arc::new(state),
                    principal: principal.filter(|_| enforced).map(|p| p.arn),
                    spec,
                };
                (function.spec.binary.clone(), function)
            })
            .collect();
        Ok(Functions {
            by_binary,
            enforced,
        })
    }

    /// A state acting as the function built from `binary` alone (as `webhooks-admin --local`
    /// runs the sweeper's redrive): its principal is made (or found) on the emulator.
    pub async fn one(
        template: &Template,
        config: &Config,
        resolver: &Resolver,
        binary: &str,
    ) -> Result<AppState, String> {
        let spec = template
            .functions()?
            .into_iter()
            .find(|f| f.binary == binary)
            .ok_or_else(|| format!("template.yaml has no function built from {binary}"))?;
        let endpoint = config.aws_endpoint_url.clone().unwrap_or_default();
        let policy = function_policy(template, &spec, resolver)?;
        let name = principal_name(&config.table_name, &spec);
        let credentials =
            match make_principal(&shared::tls::http_client(), &endpoint, &name, &policy).await {
                Ok(principal) => Some(principal.credentials),
                Err(PrincipalError::NotEnforced) => None,
                Err(PrincipalError::Failed(why)) => return Err(why),
            };
        Ok(AppState::connect(
            config.clone(),
            Connection {
                credentials,
                ..Connection::default()
            },
        )
        .await)
    }

    /// The function built from `binary`.
    pub fn get(&self, binary: &str) -> Result<&Function, String> {
        self.by_binary
            .get(binary)
            .ok_or_else(|| format!("template.yaml has no function built from {binary}"))
    }

    /// Every function's state, by binary.
    pub fn states(&self) -> impl Iterator<Item = (&str, &Arc<AppState>)> {
        self.by_binary
            .iter()
            .map(|(binary, f)| (binary.as_str(), &f.state))
    }

    /// The state of the function built from `binary`.
    pub fn state(&self, binary: &str) -> Result<Arc<AppState>, String> {
        Ok(Arc::clone(&self.get(binary)?.state))
    }
}
