//! Reads template.yaml, the single source of truth for routes, functions and resources.

use serde_json::Value;

/// The template, built into the binary so the local stack always matches the code it runs.
pub const TEMPLATE_YAML: &str = include_str!("../../../template.yaml");

/// One route of the HTTP API: method, path pattern and the function (binary) serving it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRoute {
    pub method: String,
    pub path: String,
    pub function: String,
    /// Outside the authorizer (`Auth: {Authorizer: NONE}`).
    pub public: bool,
}

/// A function of the template and the binary it is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub binary: String,
    /// Its `Timeout` (or the `Globals`' one; Lambda's default is 3 s): how long Lambda lets
    /// one invocation run.
    pub timeout: std::time::Duration,
    /// The role it runs as: `Role: !GetAtt <Role>.Arn`, or the one SAM makes for it
    /// (`<Function>Role`).
    pub role: String,
    /// Whether the role is the template's own (`Role`), not SAM's.
    pub explicit_role: bool,
}

/// An SQS event source mapping: the queue (its logical id) and how batches are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSourceSpec {
    pub queue: String,
    /// Most messages per invocation (`BatchSize`).
    pub batch_size: usize,
    /// How long the mapping gathers a batch before it invokes with fewer
    /// (`MaximumBatchingWindowInSeconds`).
    pub window: std::time::Duration,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`: the function names the messages
    /// that failed; without it a failed invocation fails the whole batch.
    pub reports_failures: bool,
}

/// The path of the HTTP API's `$default` route (an `HttpApi` event with no `Path` and no
/// `Method`): whatever no other route matches.
pub const DEFAULT_ROUTE: &str = "$default";

/// The API's Lambda authorizer as the template declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizerSpec {
    /// The headers a request must carry for the authorizer to be called at all (its
    /// identity source), lowercase.
    pub identity_headers: Vec<String>,
    /// How long API Gateway caches its answer per identity (`ReauthorizeEvery`).
    pub cache_ttl: std::time::Duration,
}

/// A resource of the template: its logical id and properties, as JSON.
#[derive(Clone, Debug)]
pub struct ResourceSpec {
    pub logical_id: String,
    pub properties: Value,
}

#[derive(Clone, Debug)]
pub struct Template {
    resources: serde_json::Map<String, Value>,
    parameters: serde_json::Map<String, Value>,
    globals: Value,
}

impl Template {
    /// The template built into this binary.
    pub fn built_in() -> Result<Self, String> {
        Self::parse(TEMPLATE_YAML)
    }

    /// Parses a template. CloudFormation's short tags (`!Ref`, `!GetAtt`, `!Sub`) are kept
    /// as `{"!Ref": value}` objects; the local stack needs none of their values.
    pub fn parse(yaml: &str) -> Result<Self, String> {
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(yaml).map_err(|e| format!("template.yaml: {e}"))?;
        let json = yaml_to_json(doc);
        let resources = json
            .get("Resources")
            .and_then(Value::as_object)
            .cloned()
            .ok_or("template.yaml has no Resources")?;
        let parameters = json
            .get("Parameters")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let globals = json.get("Globals").cloned().unwrap_or(Value::Null);
        Ok(Template {
            resources,
            parameters,
            globals,
        })
    }

    /// A resource of the template, whole (`Type`, `Properties`, ...).
    pub fn resource(&self, logical_id: &str) -> Option<&Value> {
        self.resources.get(logical_id)
    }

    /// The names of the template's parameters.
    pub fn parameter_names(&self) -> Vec<String> {
        self.parameters.keys().cloned().collect()
    }

    /// A parameter's default, as text (CloudFormation hands every parameter over as text).
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        match self.parameters.get(name)?.get("Default")? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// A number the template gives directly or as `!Ref <Parameter>` (its default).
    fn number(&self, value: Option<&Value>) -> Option<u64> {
        match value? {
            Value::Number(n) => n.as_u64(),
            Value::Object(o) => self
                .parameter_default(o.get("!Ref")?.as_str()?)?
                .parse()
                .ok(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// The API's Lambda authorizer (`HttpApi`'s `DefaultAuthorizer`), if it has one.
    pub fn authorizer(&self) -> Result<Option<AuthorizerSpec>, String> {
        let Some((_, api)) = self.of_type("AWS::Serverless::HttpApi").next() else {
            return Ok(None);
        };
        let Some(auth) = api.pointer("/Properties/Auth") else {
            return Ok(None);
        };
        let Some(name) = auth.get("DefaultAuthorizer").and_then(Value::as_str) else {
            return Ok(None);
        };
        let spec = auth
            .pointer(&format!("/Authorizers/{name}"))
            .ok_or_else(|| format!("template.yaml: the authorizer {name} is not declared"))?;
        let identity_headers = spec
            .pointer("/Identity/Headers")
            .and_then(Value::as_array)
            .map(|h| {
                h.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        let cache_ttl = self
            .number(spec.pointer("/Identity/ReauthorizeEvery"))
            .unwrap_or(300);
        Ok(Some(AuthorizerSpec {
            identity_headers,
            cache_ttl: std::time::Duration::from_secs(cache_ttl),
        }))
    }

    /// A function's own policy statements, as its role holds them: its `Policies`
    /// documents (or, with an explicit `Role`, that role's), plus the managed policies SAM
    /// attaches to a role it makes (basic execution, and the SQS poller's for an SQS
    /// event). Still with the template's references (`!GetAtt`, `!Sub`) in them.
    pub fn statements(&self, function: &FunctionSpec) -> Vec<Value> {
        let mut statements = Vec::new();
        let documents: Vec<Value> = if function.explicit_role {
            self.resources
                .get(&function.role)
                .and_then(|r| r.pointer("/Properties/Policies"))
                .and_then(Value::as_array)
                .map(|policies| {
                    policies
                        .iter()
                        .filter_map(|p| p.get("PolicyDocument").cloned())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            let resource = &self.resources[&function.logical_id];
            let mut documents: Vec<Value> = resource
                .pointer("/Properties/Policies")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            documents.push(managed::basic_execution());
            let polls_sqs = resource
                .pointer("/Properties/Events")
                .and_then(Value::as_object)
                .is_some_and(|events| {
                    events
                        .values()
                        .any(|e| e.get("Type").and_then(Value::as_str) == Some("SQS"))
                });
            if polls_sqs {
                documents.push(managed::sqs_queue_execution());
            }
            documents
        };
        for document in documents {
            match document.get("Statement") {
                Some(Value::Array(list)) => statements.extend(list.iter().cloned()),
                Some(one) => statements.push(one.clone()),
                None => {}
            }
        }
        statements
    }

    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.resources
            .iter()
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
    }

    /// Every function with the binary its `BuildProperties` names.
    pub fn functions(&self) -> Result<Vec<FunctionSpec>, String> {
        let default_timeout = self
            .number(self.globals.pointer("/Function/Timeout"))
            .unwrap_or(3);
        self.of_type("AWS::Serverless::Function")
            .map(|(id, r)| {
                let binary = r
                    .pointer("/Metadata/BuildProperties/Binary")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        format!("function {id}: Metadata.BuildProperties.Binary is missing")
                    })?;
                let timeout = self
                    .number(r.pointer("/Properties/Timeout"))
                    .unwrap_or(default_timeout);
                let explicit = r.pointer("/Properties/Role");
                let role = match explicit {
                    Some(role) => get_att_target(role)
                        .ok_or_else(|| format!("function {id}: Role must be !GetAtt <Role>.Arn"))?,
                    None => format!("{id}Role"),
                };
                Ok(FunctionSpec {
                    logical_id: id.clone(),
                    binary: binary.to_string(),
                    timeout: std::time::Duration::from_secs(timeout),
                    role,
                    explicit_role: explicit.is_some(),
                })
            })
            .collect()
    }

    /// Every `HttpApi` event of every function.
    pub fn http_routes(&self) -> Result<Vec<HttpRoute>, String> {
        let mut routes = Vec::new();
        for function in self.functions()? {
            let events = self.resources[&function.logical_id]
                .pointer("/Properties/Events")
                .and_then(Value::as_object);
            for (name, event) in events.into_iter().flatten() {
                if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
                    continue;
                }
                let text = |field: &str| {
                    event
                        .pointer(&format!("/Properties/{field}"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| {
                            format!("{}.{name}: {field} is missing", function.logical_id)
                        })
                };
                let authorizer = event
                    .pointer("/Properties/Auth/Authorizer")
                    .and_then(Value::as_str);
                let has = |field: &str| event.pointer(&format!("/Properties/{field}")).is_some();
                let (method, path) = if !has("Method") && !has("Path") {
                    ("ANY".to_string(), DEFAULT_ROUTE.to_string())
                } else {
                    (text("Method")?.to_ascii_uppercase(), text("Path")?)
                };
                routes.push(HttpRoute {
                    method,
                    path,
                    function: function.binary.clone(),
                    public: authorizer == Some("NONE"),
                });
            }
        }
        Ok(routes)
    }

    /// The binaries of the functions with a function URL (`FunctionUrlConfig`).
    pub fn function_urls(&self) -> Result<Vec<String>, String> {
        Ok(self
            .functions()?
            .into_iter()
            .filter(|f| {
                self.resources[&f.logical_id]
                    .pointer("/Properties/FunctionUrlConfig")
                    .is_some()
            })
            .map(|f| f.binary)
            .collect())
    }

    /// The SQS event source mappings of the function built from `binary`.
    pub fn sqs_event_sources(&self, binary: &str) -> Result<Vec<EventSourceSpec>, String> {
        let function = self
            .functions()?
            .into_iter()
            .find(|f| f.binary == binary)
            .ok_or_else(|| format!("template.yaml has no function built from {binary}"))?;
        let events = self.resources[&function.logical_id]
            .pointer("/Properties/Events")
            .and_then(Value::as_object);
        events
            .into_iter()
            .flatten()
            .filter(|(_, e)| e.get("Type").and_then(Value::as_str) == Some("SQS"))
            .map(|(name, e)| {
                let queue = e
                    .pointer("/Properties/Queue")
                    .and_then(get_att_target)
                    .ok_or_else(|| format!("{binary}.{name}: Queue must be !GetAtt <Queue>.Arn"))?;
                let batch_size = self
                    .number(e.pointer("/Properties/BatchSize"))
                    .unwrap_or(10);
                let window = self
                    .number(e.pointer("/Properties/MaximumBatchingWindowInSeconds"))
                    .unwrap_or(0);
                let reports_failures = e
                    .pointer("/Properties/FunctionResponseTypes")
                    .and_then(Value::as_array)
                    .is_some_and(|t| t.iter().any(|t| t == "ReportBatchItemFailures"));
                if !(1..=10_000).contains(&batch_size) || (batch_size > 10 && window == 0) {
                    return Err(format!(
                        "{binary}.{name}: BatchSize {batch_size} cannot be served by SQS (1 to 10, \
                         or up to 10,000 with a batching window)"
                    ));
                }
                if window > 300 {
                    return Err(format!(
                        "{binary}.{name}: MaximumBatchingWindowInSeconds {window} is over SQS's 300"
                    ));
                }
                Ok(EventSourceSpec {
                    queue,
                    batch_size: batch_size as usize,
                    window: std::time::Duration::from_secs(window),
                    reports_failures,
                })
            })
            .collect()
    }

    /// Resources of one CloudFormation type (`AWS::DynamoDB::Table`, `AWS::SQS::Queue`).
    pub fn resources_of_type(&self, kind: &str) -> Vec<ResourceSpec> {
        self.of_type(kind)
            .map(|(id, r)| ResourceSpec {
                logical_id: id.clone(),
                properties: r.get("Properties").cloned().unwrap_or(Value::Null),
            })
            .collect()
    }
}

/// The managed policies SAM attaches to the roles it makes, as AWS publishes them.
mod managed {
    use serde_json::{Value, json};

    /// `AWSLambdaBasicExecutionRole`.
    pub fn basic_execution() -> Value {
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*"
        }]})
    }

    /// `AWSLambdaSQSQueueExecutionRole`: what an SQS event source mapping polls with.
    pub fn sqs_queue_execution() -> Value {
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                       "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*"
        }]})
    }
}

/// The logical id in `{"!GetAtt": "X.Arn"}` (or `Fn::GetAtt: [X, Arn]`).
pub fn get_att_target(value: &Value) -> Option<String> {
    if let Some(text) = value.get("!GetAtt").and_then(Value::as_str) {
        return text.strip_suffix(".Arn").map(str::to_string);
    }
    let parts = value.get("Fn::GetAtt")?.as_array()?;
    (parts.get(1)?.as_str()? == "Arn").then(|| parts.first()?.as_str().map(str::to_string))?
}

fn yaml_to_json(value: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| n.as_f64().map(Value::from))
            .unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| match k {
                    Y::String(k) => Some((k, yaml_to_json(v))),
                    _ => None,
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let mut object = serde_json::Map::new();
            object.insert(tagged.tag.to_string(), yaml_to_json(tagged.value));
            Value::Object(object)
        }
    }
}

/// A route's path pattern matched against a request path: the path parameters, if it
/// matches. A last segment `{name+}` (API Gateway's greedy parameter) takes the rest of
/// the path, at least one segment.
pub fn match_path(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut want = pattern.trim_matches('/').split('/');
    let mut got = path.trim_matches('/').split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) => {
                if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix("+}")) {
                    if g.is_empty() || want.next().is_some() {
                        return None;
                    }
                    let rest: Vec<&str> = std::iter::once(g).chain(got).collect();
                    params.push((name.to_string(), rest.join("/")));
                    return Some(params);
                } else if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                    if g.is_empty() {
                        return None;
                    }
                    params.push((name.to_string(), g.to_string()));
                } else if w != g {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_their_patterns_and_capture_parameters() {
        assert_eq!(match_path("/v1/webhooks", "/v1/webhooks"), Some(vec![]));
        assert_eq!(
            match_path(
                "/v1/webhooks/{id}/secret/rotate",
                "/v1/webhooks/wh_1/secret/rotate"
            ),
            Some(vec![("id".into(), "wh_1".into())])
        );
        assert_eq!(match_path("/v1/webhooks/{id}", "/v1/webhooks"), None);
        assert_eq!(match_path("/v1/webhooks/{id}", "/v1/webhooks/"), None);
        assert_eq!(match_path("/v1/webhooks/{id}", "/v1/webhooks/a/b"), None);
        assert_eq!(match_path("/v1/me", "/v1/you"), None);
        assert_eq!(
            match_path("/portal/{proxy+}", "/portal/assets/main.js"),
            Some(vec![("proxy".into(), "assets/main.js".into())])
        );
        assert_eq!(match_path("/portal/{proxy+}", "/portal"), None);
        assert_eq!(match_path("/portal/{proxy+}", "/portal/"), None);
        assert_eq!(match_path("/portal", "/portal/"), Some(vec![]));
    }

    #[test]
    fn short_tags_are_kept_as_objects() {
        let t = Template::parse(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Metadata:\n      BuildProperties:\n        Binary: get_me\n    Properties:\n      Role: !GetAtt R.Arn\n      Events:\n        Get:\n          Type: HttpApi\n          Properties:\n            Path: /v1/me\n            Method: get\n            ApiId: !Ref Api\n",
        )
        .unwrap();
        assert_eq!(
            t.http_routes().unwrap(),
            vec![HttpRoute {
                method: "GET".into(),
                path: "/v1/me".into(),
                function: "get_me".into(),
                public: false,
            }]
        );
    }

    /// Binaries in `functions/` that serve no API route.
    const NON_ROUTE_FUNCTIONS: &[&str] = &["authorizer", "deliver", "sweeper", "smoke_receiver"];

    /// template.yaml, the handler registry and `functions/` must name the same functions,
    /// one to one, and every template route must reach a handler.
    #[test]
    fn template_routes_binaries_and_handlers_match_one_to_one() {
        let template = Template::built_in().unwrap();
        let mut in_template: Vec<String> = template
            .functions()
            .unwrap()
            .into_iter()
            .map(|f| f.binary)
            .collect();
        in_template.sort();
        let before = in_template.len();
        in_template.dedup();
        assert_eq!(
            before,
            in_template.len(),
            "a binary is named by two template functions"
        );

        let functions_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
        let mut sources: Vec<String> = std::fs::read_dir(functions_dir.join("src/bin"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        sources.sort();
        assert_eq!(
            sources, in_template,
            "functions/src/bin and template.yaml differ"
        );

        let manifest = std::fs::read_to_string(functions_dir.join("Cargo.toml")).unwrap();
        let mut declared: Vec<String> = manifest
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .map(|l| l.trim_end_matches('"').to_string())
            .filter(|name| name != "functions")
            .collect();
        declared.sort();
        assert_eq!(
            declared, in_template,
            "functions/Cargo.toml [[bin]] entries and template.yaml differ"
        );

        let mut registered: Vec<String> = shared::api::ROUTES
            .iter()
            .map(|r| r.function.to_string())
            .chain(
                shared::api::PUBLIC_ROUTES
                    .iter()
                    .map(|r| r.function.to_string()),
            )
            .chain(
                shared::api::ASSET_ROUTES
                    .iter()
                    .map(|r| r.function.to_string()),
            )
            .chain(NON_ROUTE_FUNCTIONS.iter().map(|f| f.to_string()))
            .collect();
        registered.sort();
        assert_eq!(
            registered, in_template,
            "the handler registry and template.yaml differ"
        );

        // Each route's binary serves its own route (and so links no other handler).
        let doors = shared::api::ROUTES
            .iter()
            .map(|r| (r.function, "serve_route(&shared::api::routes"))
            .chain(
                shared::api::PUBLIC_ROUTES
                    .iter()
                    .map(|r| (r.function, "serve_public_route(&shared::api::public_routes")),
            )
            .chain(
                shared::api::ASSET_ROUTES
                    .iter()
                    .map(|r| (r.function, "serve_asset_route(&shared::api::asset_routes")),
            );
        for (function, door) in doors {
            let source =
                std::fs::read_to_string(functions_dir.join(format!("src/bin/{function}.rs")))
                    .unwrap();
            let serves = format!("{door}::{})", function.to_uppercase());
            assert!(
                source.contains(&serves),
                "{function} does not call {serves}"
            );
        }

        // A route behind the authorizer has an authenticated handler, one outside it a
        // public handler: never the other way round.
        let routes = template.http_routes().unwrap();
        for route in shared::api::ROUTES {
            assert!(
                routes
                    .iter()
                    .any(|r| r.function == route.function && !r.public),
                "{} has a handler but no route behind the authorizer in template.yaml",
                route.function
            );
        }
        let public = shared::api::PUBLIC_ROUTES
            .iter()
            .map(|r| r.function)
            .chain(shared::api::ASSET_ROUTES.iter().map(|r| r.function));
        for function in public {
            assert!(
                routes.iter().any(|r| r.function == function && r.public),
                "{function} has a public handler but no route with Authorizer: NONE in template.yaml"
            );
        }
        for route in &routes {
            let handled = if route.public {
                shared::api::public_route(&route.function).is_some()
                    || shared::api::asset_route(&route.function).is_some()
            } else {
                shared::api::route(&route.function).is_some()
            };
            assert!(
                handled,
                "{} {} has no handler of its kind",
                route.method, route.path
            );
        }
    }

    /// openapi.yaml documents exactly the template's routes (method and path).
    #[test]
    fn openapi_and_template_agree_on_routes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.yaml");
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let doc = yaml_to_json(doc);
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    documented.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        documented.sort();
        let mut routed: Vec<(String, String)> = Template::built_in()
            .unwrap()
            .http_routes()
            .unwrap()
            .into_iter()
            // The $default route answers what no route matches: it is no route of the API.
            .filter(|r| r.path != DEFAULT_ROUTE)
            .map(|r| (r.method, r.path))
            .collect();
        routed.sort();
        assert_eq!(
            documented, routed,
            "openapi.yaml and template.yaml disagree on routes"
        );
    }

    #[test]
    fn the_built_in_template_parses() {
        let t = Template::built_in().unwrap();
        assert!(!t.http_routes().unwrap().is_empty());
        assert_eq!(t.resources_of_type("AWS::DynamoDB::Table").len(), 1);
    }
}
