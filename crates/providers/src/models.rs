//! Builds the [`Model`] a workspace's `models.yaml` entry names.

use crate::scripted::ScriptedModel;
use crate::{Model, ModelError};
use harness_config::{Provider, Workspace};
use std::sync::Arc;

/// The model called `model_name` in `workspace`.
///
/// Only `scripted` exists so far; HTTP providers are refused with a
/// [`ModelError::Config`] rather than faked.
pub fn build_model(workspace: &Workspace, model_name: &str) -> Result<Arc<dyn Model>, ModelError> {
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
        Provider::Openai => Err(not_built("openai")),
        Provider::Anthropic => Err(not_built("anthropic")),
    }
}

fn not_built(provider: &str) -> ModelError {
    ModelError::Config(format!(
        "provider `{provider}` is not built yet (HTTP providers come with a later issue); use `scripted`"
    ))
}
