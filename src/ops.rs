//! Routes a validated call to the backend that owns its memory: host tensors to the CPU
//! reference backend, device tensors to the GPU backend (or a clear error when none is built).

use crate::core::attention::{AttentionArgs, AttentionProblem, validate_attention};
use crate::core::dtype::{Device, Fp8Format};
use crate::core::plan::{Plan, Target, plan_attention};
use crate::core::status::{Result, Status};
use crate::core::write::{WriteArgs, WritePath, validate_write};
use crate::{cpu, fail, gpu};

/// The planner's target for tensors on `device`.
pub fn target_for(device: Device) -> Result<Target> {
    if device.is_gpu() { Ok(Target::Gpu(gpu::device_limits(device)?)) } else { Ok(Target::Cpu) }
}

/// The e4m3 flavour "fp8" means for tensors on `device`.
pub fn device_e4m3(target: &Target) -> Fp8Format {
    match target {
        Target::Cpu => Fp8Format::E4M3FN,
        Target::Gpu(limits) => limits.fp8_e4m3(),
    }
}

/// Validates and performs a cache write; returns the path taken.
pub fn write_kv_cache(args: &WriteArgs<'_>, stream: usize) -> Result<WritePath> {
    let target = target_for(args.key.device)?;
    let problem = validate_write(args, device_e4m3(&target))?;
    match target {
        Target::Cpu => cpu::write_kv_cache(&problem)?,
        Target::Gpu(_) => gpu::write_kv_cache(&problem, stream)?,
    }
    Ok(problem.path)
}

/// Validates and plans an attention call without running it.
pub fn plan(args: &AttentionArgs<'_>, target: &Target) -> Result<(AttentionProblem, Plan)> {
    let problem = validate_attention(args, device_e4m3(target))?;
    let plan = plan_attention(&problem, target)?;
    Ok((problem, plan))
}

/// Validates, plans and runs an attention call; returns the plan it took.
pub fn paged_attention(
    args: &AttentionArgs<'_>,
    workspace: usize,
    workspace_bytes: u64,
    stream: usize,
) -> Result<Plan> {
    let target = target_for(args.query.device)?;
    let (problem, plan) = plan(args, &target)?;
    if workspace_bytes < plan.workspace_bytes {
        fail!(
            Status::WorkspaceTooSmall,
            "workspace_bytes = {workspace_bytes}, expected at least {} (pkv_paged_attention_workspace_size)",
            plan.workspace_bytes
        );
    }
    if plan.workspace_bytes > 0 && workspace == 0 {
        fail!(Status::NullArgument, "workspace is NULL but this call needs {} bytes", plan.workspace_bytes);
    }
    match target {
        Target::Cpu => cpu::paged_attention(&problem)?,
        Target::Gpu(_) => gpu::paged_attention(&problem, &plan, workspace, workspace_bytes, stream)?,
    }
    Ok(plan)
}
