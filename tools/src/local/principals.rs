//! Each function of template.yaml as a principal of its own on the local emulator: an IAM
//! user whose one policy is what the template grants the function's role, its references
//! resolved to the local resources. The emulator (`scripts/emulator.py`) enforces it, so a
//! call the template does not allow fails here as it would in AWS.

use std::collections::HashMap;

use aws_sdk_dynamodb::config::Credentials;
use serde_json::{Map, Value, json};

use super::template::{FunctionSpec, Template};

/// What the template's references resolve to locally: each resource's `Ref` and attributes
/// (`Arn`, `QueueName`), and the pseudo parameters.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    refs: HashMap<String, String>,
    attributes: HashMap<(String, String), String>,
}

impl Resolver {
    /// `AWS::Region`, `AWS::AccountId`, `AWS::Partition`, `AWS::StackName`, and every
    /// parameter's default.
    pub fn new(template: &Template, region: &str, account: &str, stack: &str) -> Self {
        let mut resolver = Resolver::default();
        for (name, value) in [
            ("AWS::Region", region),
            ("AWS::AccountId", account),
            ("AWS::Partition", "aws"),
            ("AWS::URLSuffix", "amazonaws.com"),
            ("AWS::StackName", stack),
        ] {
            resolver.refs.insert(name.into(), value.into());
        }
        for name in template.parameter_names() {
            if let Some(default) = template.parameter_default(&name) {
                resolver.refs.insert(name, default);
            }
        }
        resolver
    }

    /// A resource's `Ref` value.
    pub fn set_ref(&mut self, logical_id: &str, value: impl Into<String>) {
        self.refs.insert(logical_id.into(), value.into());
    }

    /// A resource's attribute (`!GetAtt <logical_id>.<attribute>`).
    pub fn set_attribute(&mut self, logical_id: &str, attribute: &str, value: impl Into<String>) {
        self.attributes
            .insert((logical_id.into(), attribute.into()), value.into());
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        self.refs
            .get(name)
            .cloned()
            .ok_or_else(|| format!("template.yaml: !Ref {name} has no local value"))
    }

    fn attribute(&self, path: &str) -> Result<String, String> {
        let (id, attribute) = path
            .split_once('.')
            .ok_or_else(|| format!("template.yaml: !GetAtt {path} names no attribute"))?;
        self.attributes
            .get(&(id.to_string(), attribute.to_string()))
            .cloned()
            .ok_or_else(|| format!("template.yaml: !GetAtt {path} has no local value"))
    }

    /// `!Sub` text: `${Name}` and `${Resource.Attribute}` replaced.
    fn substitute(&self, text: &str, vars: &Map<String, Value>) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("template.yaml: an unclosed ${{ in !Sub {text:?}"))?;
            let name = &after[..end];
            let value = match vars.get(name) {
                Some(v) => match self.resolve(v)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
                None if name.contains('.') => self.attribute(name)?,
                None => self.reference(name)?,
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A template value with every `!Ref`, `!GetAtt` and `!Sub` (short or `Fn::` form)
    /// replaced by its local value.
    pub fn resolve(&self, value: &Value) -> Result<Value, String> {
        Ok(match value {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.resolve(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) if map.len() == 1 => {
                let (key, inner) = map.iter().next().expect("one entry");
                match key.as_str() {
                    "!Ref" | "Ref" => {
                        Value::String(self.reference(inner.as_str().unwrap_or_default())?)
                    }
                    "!GetAtt" | "Fn::GetAtt" => {
                        let path = match inner {
                            Value::String(s) => s.clone(),
                            Value::Array(parts) => parts
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join("."),
                            _ => String::new(),
                        };
                        Value::String(self.attribute(&path)?)
                    }
                    "!Sub" | "Fn::Sub" => match inner {
                        Value::String(text) => Value::String(self.substitute(text, &Map::new())?),
                        Value::Array(parts) => {
                            let text = parts.first().and_then(Value::as_str).unwrap_or_default();
                            let vars = parts
                                .get(1)
                                .and_then(Value::as_object)
                                .cloned()
                                .unwrap_or_default();
                            Value::String(self.substitute(text, &vars)?)
                        }
                        _ => return Err(format!("template.yaml: a !Sub of {inner}")),
                    },
                    _ => Value::Object([(key.clone(), self.resolve(inner)?)].into_iter().collect()),
                }
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.resolve(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// The local name of a function's principal: `<prefix>-<LogicalId>`, cut to IAM's 64.
pub fn principal_name(prefix: &str, function: &FunctionSpec) -> String {
    let name = format!("{prefix}-{}", function.logical_id);
    if name.len() <= 64 {
        return name;
    }
    // A long prefix is cut, and a hash of the whole name keeps names apart.
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    name.hash(&mut hasher);
    let digest = format!("{:016x}", hasher.finish());
    format!("{}-{digest}", &name[..64 - digest.len() - 1])
}

/// The ARN of a local principal.
pub fn principal_arn(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:user/{name}")
}

/// What a function's role grants it, resolved: one policy document.
pub fn function_policy(
    template: &Template,
    function: &FunctionSpec,
    resolver: &Resolver,
) -> Result<Value, String> {
    let statements = template
        .statements(function)
        .iter()
        .map(|s| resolver.resolve(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", function.logical_id))?;
    Ok(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// A principal made on the emulator.
#[derive(Clone, Debug)]
pub struct Principal {
    pub arn: String,
    pub credentials: Credentials,
}

/// Why a principal could not be made.
#[derive(Debug)]
pub enum PrincipalError {
    /// The emulator has no principals endpoint: it is not this project's
    /// (`AWS_ENDPOINT_URL` names another), so it enforces nothing.
    NotEnforced,
    Failed(String),
}

/// Makes (or remakes) the principal `name` with `policy` on the emulator at `endpoint`
/// (`POST /_webhooks/principals`), with a fresh access key.
pub async fn make_principal(
    http: &reqwest::Client,
    endpoint: &str,
    name: &str,
    policy: &Value,
) -> Result<Principal, PrincipalError> {
    let url = format!("{}/_webhooks/principals", endpoint.trim_end_matches('/'));
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(json!({"name": name, "policy": policy}).to_string())
        .send()
        .await
        .map_err(|e| PrincipalError::Failed(format!("making the principal {name}: {e}")))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status == 404 {
        return Err(PrincipalError::NotEnforced);
    }
    let text = |field: &str| body[field].as_str().map(str::to_string);
    match (
        status,
        text("arn"),
        text("access_key_id"),
        text("secret_access_key"),
    ) {
        (200, Some(arn), Some(id), Some(secret)) => Ok(Principal {
            arn,
            credentials: Credentials::new(id, secret, None, None, "local-function"),
        }),
        _ => Err(PrincipalError::Failed(format!(
            "the emulator refused the principal {name} ({status}): {body}"
        ))),
    }
}
