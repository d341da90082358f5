//! Builds the [`Model`] a workspace's `models.yaml` entry names.

use crate::scripted::ScriptedModel;
use crate::{AnthropicModel, Model, ModelError, OpenAiModel, RateLimits};
use harness_config::{ModelConfig, Provider, Workspace};
use std::sync::Arc;

/// The model called `model_name` in `workspace`. HTTP providers read their key from
/// the environment variable `api_key_env` names, now, and count their calls against
/// `limits` (one per process: every model naming the same key shares its budget).
pub fn build_model(
    workspace: &Workspace,
    model_name: &str,
    limits: &RateLimits,
) -> Result<Arc<dyn Model>, ModelError> {
    let config = workspace.models.get(model_name).ok_or_else(|| {
        ModelError::Config(format!(
            "model `{model_name}` is not defined in config/models.yaml"
        ))
    })?;
    match config.provider {
        Provider::Scripted => {
            let script = config.script.as_ref().ok_or_else(|| {
                ModelError::Config(format!(
                    "model `{model_name}`: provider `scripted` needs `script`"
                ))
            })?;
            let path = workspace.root.join(script);
            let model = ScriptedModel::from_file_labeled(&path, &script.display().to_string())?;
            Ok(Arc::new(model))
        }
        Provider::Openai => {
            let key = api_key(model_name, config, |n| std::env::var(n).ok())?;
            Ok(Arc::new(OpenAiModel::with_rate_limits(
                model_name, config, key, limits,
            )?))
        }
        Provider::Anthropic => {
            let key = api_key(model_name, config, |n| std::env::var(n).ok())?;
            Ok(Arc::new(AnthropicModel::with_rate_limits(
                model_name, config, key, limits,
            )?))
        }
    }
}

/// The key `api_key_env` names, read with `env`; an error names the variable (never
/// a value) when it is unset or empty.
pub fn api_key(
    model_name: &str,
    config: &ModelConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, ModelError> {
    let Some(var) = config.api_key_env.as_deref() else {
        return Ok(None);
    };
    match env(var) {
        Some(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
        _ => Err(ModelError::Config(format!(
            "model `{model_name}`: the environment variable {var} (its `api_key_env`) is not set; \
             export it in the environment of the process that runs the agents"
        ))),
    }
}
