//! `agent-harness runtime …`: operator views and actions over the durable records.

use crate::context::Ctx;
use anyhow::Result;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum RuntimeCommand {}

pub async fn dispatch(_ctx: &Ctx, c: RuntimeCommand) -> Result<ExitCode> {
    match c {}
}
