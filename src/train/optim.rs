//! AdamW and Nesterov SGD with state that can be saved and restored.
//!
//! `tch`'s optimisers keep their moment buffers inside libtorch where they cannot be read, so a
//! run resumed from a checkpoint would restart them from zero and drift from the uninterrupted
//! run. These follow libtorch's update rules (same defaults, decoupled decay for AdamW, coupled
//! for SGD) with the buffers held here, named after their parameter.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, ensure};
use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

use crate::train::resnet::NO_DECAY_GROUP;

/// AdamW's first-moment decay (libtorch's default).
const BETA1: f64 = 0.9;
/// AdamW's second-moment decay (libtorch's default).
const BETA2: f64 = 0.999;
/// AdamW's denominator guard (libtorch's default).
const EPS: f64 = 1e-8;
/// SGD momentum.
const MOMENTUM: f64 = 0.9;

/// Optimiser choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Optim {
    /// AdamW (decoupled weight decay).
    Adamw,
    /// SGD with Nesterov momentum 0.9.
    Sgd,
}

impl Optim {
    /// Peak learning rate used when none is given. For SGD, 0.1 (the batch-256 ImageNet
    /// value) made the first epoch diverge at batch 32.
    pub fn default_lr(self) -> f64 {
        match self {
            Optim::Adamw => 2e-3,
            Optim::Sgd => 0.05,
        }
    }

    /// Weight decay of the parameters that get decay (not BatchNorm's).
    pub fn weight_decay(self) -> f64 {
        match self {
            Optim::Adamw => 0.05,
            Optim::Sgd => 5e-4,
        }
    }

    /// Names of the per-parameter buffers.
    fn buffers(self) -> &'static [&'static str] {
        match self {
            Optim::Adamw => &["exp_avg", "exp_avg_sq"],
            Optim::Sgd => &["momentum"],
        }
    }
}

/// One optimised variable with its buffers (zeros at the start, as in libtorch).
#[derive(Debug)]
struct Param {
    name: String,
    var: Tensor,
    decay: f64,
    buffers: Vec<Tensor>,
}

/// An optimiser over the variables of a VarStore that require gradients when it is built
/// (variables frozen before are left alone). BatchNorm scales and shifts
/// ([`NO_DECAY_GROUP`]) get no weight decay.
#[derive(Debug)]
pub struct Optimizer {
    optim: Optim,
    params: Vec<Param>,
    steps: u64,
}

/// The trainable variables of `vs` that require gradients, with their VarStore group, sorted by
/// name. `tch` keeps the group only beside the tensor, so the two lists are matched by the
/// address of the tensor data they share.
fn trainable_with_groups(vs: &nn::VarStore) -> Result<Vec<(String, Tensor, usize)>> {
    let vars = vs.variables_.lock().map_err(|_| anyhow!("the VarStore's lock is poisoned"))?;
    let group_of: HashMap<usize, usize> =
        vars.trainable_variables.iter().map(|v| (v.tensor.data_ptr() as usize, v.group)).collect();
    let mut out: Vec<(String, Tensor, usize)> = vars
        .named_variables
        .iter()
        .filter(|(_, t)| t.requires_grad())
        .filter_map(|(name, t)| {
            group_of.get(&(t.data_ptr() as usize)).map(|&g| (name.clone(), t.shallow_clone(), g))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl Optimizer {
    /// Builds the optimiser; fails if no variable of `vs` requires gradients.
    pub fn new(vs: &nn::VarStore, optim: Optim) -> Result<Self> {
        let params: Vec<Param> = trainable_with_groups(vs)?
            .into_iter()
            .map(|(name, var, group)| {
                let decay = if group == NO_DECAY_GROUP { 0.0 } else { optim.weight_decay() };
                let buffers = optim.buffers().iter().map(|_| var.zeros_like()).collect();
                Param { name, var, decay, buffers }
            })
            .collect();
        ensure!(!params.is_empty(), "no variable is left to train");
        Ok(Self { optim, params, steps: 0 })
    }

    /// Number of variables optimised.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether no variable is optimised (never true for a built optimiser).
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Total number of elements of the optimised variables.
    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|p| p.var.numel()).sum()
    }

    /// Steps taken so far (restored by [`Optimizer::load_state`]).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Clears the gradients of every optimised variable.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut grad = p.var.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
    }

    /// Back-propagates `loss`, then takes one step at learning rate `lr`.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) -> Result<()> {
        self.zero_grad();
        loss.f_backward().context("backward pass failed")?;
        self.step(lr)
    }

    /// One update of every variable that has a gradient, with libtorch's rules.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let optim = self.optim;
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.var.grad();
                if !grad.defined() {
                    continue;
                }
                let update = match optim {
                    Optim::Adamw => adamw(p, &grad, lr, t),
                    Optim::Sgd => sgd(p, &grad, lr),
                };
                update.with_context(|| format!("cannot update {}", p.name))?;
            }
            Ok(())
        })
    }

    /// The buffers as named tensors (`<buffer>.<variable>`), for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let names = self.optim.buffers();
        self.params
            .iter()
            .flat_map(|p| {
                names.iter().zip(&p.buffers).map(|(b, t)| (format!("{b}.{}", p.name), t.copy()))
            })
            .collect()
    }

    /// Restores buffers saved by [`Optimizer::state`] and the step count; fails, naming it, on
    /// a missing buffer or one of the wrong shape.
    pub fn load_state(&mut self, saved: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        let names = self.optim.buffers();
        tch::no_grad(|| {
            for p in &mut self.params {
                for (b, buf) in names.iter().zip(&mut p.buffers) {
                    let key = format!("{b}.{}", p.name);
                    let src = saved.get(&key).with_context(|| format!("no optimiser {key}"))?;
                    ensure!(
                        src.size() == buf.size(),
                        "optimiser {key} has shape {:?}, expected {:?}",
                        src.size(),
                        buf.size()
                    );
                    buf.f_copy_(src).with_context(|| format!("cannot restore {key}"))?;
                }
            }
            Ok(())
        })?;
        self.steps = steps;
        Ok(())
    }
}

/// libtorch's AdamW: decay the weight, update both moments, step by the bias-corrected ratio.
/// The in-place operations also return a handle to the tensor they changed; it is not needed.
fn adamw(p: &mut Param, grad: &Tensor, lr: f64, t: i32) -> Result<()> {
    if p.decay != 0.0 {
        let _ = p.var.f_mul_scalar_(1.0 - lr * p.decay)?;
    }
    let [exp_avg, exp_avg_sq] = &mut p.buffers[..] else {
        return Err(anyhow!("AdamW state of {} is incomplete", p.name));
    };
    let _ = exp_avg.f_mul_scalar_(BETA1)?.f_add_(&grad.f_mul_scalar(1.0 - BETA1)?)?;
    let _ =
        exp_avg_sq.f_mul_scalar_(BETA2)?.f_add_(&grad.f_mul(grad)?.f_mul_scalar(1.0 - BETA2)?)?;
    let bias1 = 1.0 - BETA1.powi(t);
    let bias2 = 1.0 - BETA2.powi(t);
    let denom = exp_avg_sq.f_sqrt()?.f_div_scalar(bias2.sqrt())?.f_add_scalar(EPS)?;
    let _ = p.var.f_sub_(&exp_avg.f_div(&denom)?.f_mul_scalar(lr / bias1)?)?;
    Ok(())
}

/// libtorch's SGD with Nesterov momentum and coupled weight decay; a zero buffer makes the
/// first step's buffer equal to the gradient, as libtorch's first step sets it.
fn sgd(p: &mut Param, grad: &Tensor, lr: f64) -> Result<()> {
    let d = if p.decay != 0.0 { grad.f_add(&p.var.f_mul_scalar(p.decay)?)? } else { grad.copy() };
    let buf = p.buffers.first_mut().with_context(|| format!("no SGD state for {}", p.name))?;
    let _ = buf.f_mul_scalar_(MOMENTUM)?.f_add_(&d)?;
    let d = d.f_add(&buf.f_mul_scalar(MOMENTUM)?)?;
    let _ = p.var.f_sub_(&d.f_mul_scalar(lr)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;
    use tch::{Device, Kind, nn::Init};

    /// A store with one decayed and one undecayed variable, and a fixed loss on them.
    fn store() -> (nn::VarStore, Tensor) {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3, 2], Init::Const(0.5));
        let b = vs.root().set_group(NO_DECAY_GROUP).var("b", &[2], Init::Const(-0.25));
        let _ = (w, b);
        let target = Tensor::from_slice(&[1.0f32, -2.0, 0.5, 3.0, -1.0, 2.0]).view([3, 2]);
        (vs, target)
    }

    fn loss(vs: &nn::VarStore, target: &Tensor) -> Tensor {
        let v = vs.variables();
        let y = &v["w"] * 2.0 + &v["b"];
        (y - target).square().sum(Kind::Float) + v["b"].abs().sum(Kind::Float)
    }

    fn assert_close(a: &nn::VarStore, b: &nn::VarStore) {
        for (name, x) in a.variables() {
            let y = &b.variables()[&name];
            let diff = f64::try_from((&x - y).abs().max()).unwrap();
            assert!(diff < 1e-6, "{name} differs from libtorch's update by {diff}");
        }
    }

    fn compare(optim: Optim) {
        let (ours_vs, target) = store();
        let (theirs_vs, _) = store();
        let mut ours = Optimizer::new(&ours_vs, optim).unwrap();
        assert_eq!(ours.len(), 2);
        let mut theirs = match optim {
            Optim::Adamw => nn::AdamW::default().build(&theirs_vs, 0.1).unwrap(),
            Optim::Sgd => nn::Sgd { momentum: MOMENTUM, nesterov: true, ..Default::default() }
                .build(&theirs_vs, 0.1)
                .unwrap(),
        };
        theirs.zero_grad();
        theirs.set_weight_decay_group(0, optim.weight_decay());
        theirs.set_weight_decay_group(NO_DECAY_GROUP, 0.0);
        for step in 0..5 {
            let lr = 0.1 / f64::from(step + 1);
            ours.backward_step(&loss(&ours_vs, &target), lr).unwrap();
            theirs.set_lr(lr);
            theirs.backward_step(&loss(&theirs_vs, &target));
        }
        assert_eq!(ours.steps(), 5);
        assert_close(&ours_vs, &theirs_vs);
    }

    #[test]
    fn adamw_follows_libtorch() {
        compare(Optim::Adamw);
    }

    #[test]
    fn sgd_follows_libtorch() {
        compare(Optim::Sgd);
    }

    #[test]
    fn restored_state_continues_like_the_uninterrupted_run() {
        let (a_vs, target) = store();
        let mut a = Optimizer::new(&a_vs, Optim::Adamw).unwrap();
        for _ in 0..3 {
            a.backward_step(&loss(&a_vs, &target), 0.05).unwrap();
        }
        let saved: HashMap<String, Tensor> = a.state().into_iter().collect();
        assert_eq!(saved.len(), 4);
        let (mut b_vs, _) = store();
        b_vs.copy(&a_vs).unwrap();
        let mut b = Optimizer::new(&b_vs, Optim::Adamw).unwrap();
        b.load_state(&saved, a.steps()).unwrap();
        for _ in 0..2 {
            a.backward_step(&loss(&a_vs, &target), 0.05).unwrap();
            b.backward_step(&loss(&b_vs, &target), 0.05).unwrap();
        }
        for (name, x) in a_vs.variables() {
            assert!(x.equal(&b_vs.variables()[&name]), "{name} differs after resuming");
        }
        let mut missing = saved;
        missing.remove("exp_avg.w");
        assert!(b.load_state(&missing, 3).unwrap_err().to_string().contains("exp_avg.w"));
    }

    #[test]
    fn frozen_variables_are_not_optimised() {
        let (vs, _) = store();
        let _ = vs.variables()["w"].set_requires_grad(false);
        assert_eq!(Optimizer::new(&vs, Optim::Sgd).unwrap().len(), 1);
        let _ = vs.variables()["b"].set_requires_grad(false);
        assert!(Optimizer::new(&vs, Optim::Sgd).is_err());
    }
}
