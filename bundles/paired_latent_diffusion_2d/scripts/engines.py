"""Per-iteration logic of the paired latent diffusion bundle, for MONAI's engines.

Each class is an ``iteration_update`` for ``monai.engines.SupervisedTrainer`` or
``SupervisedEvaluator``: the engine keeps owning the network, optimiser, loss function,
inferer, AMP scaler, handlers and metrics; the step does what one iteration of a
VAE-GAN or of latent diffusion needs beyond a plain supervised step.

* :class:`AutoencoderKLTrainStep` — AutoencoderKL: L1 + KL + perceptual (the engine's
  ``loss_function``), plus an optional patch-adversarial term and discriminator update
  once ``adversarial_warmup_epochs`` epochs are done.
* :class:`AutoencoderKLEvalStep` — reconstruction for validation metrics.
* :class:`LatentDiffusionTrainStep` — DDPM noise-prediction step through the engine's
  ``LatentDiffusionInferer`` with the frozen autoencoder and the encoded condition.
* :class:`LatentDiffusionSampleStep` — DDIM sampling of the target from the condition
  (validation and inference).

Outputs are dicts with MONAI's keys (``image``, ``label``, ``pred``, ``loss``) and the loss
terms (``loss_*``); use the engines with ``decollate=False`` during training and
:func:`loss_terms` as the stats handlers' ``output_transform``.

Example (what the bundle's JSON builds)::

    trainer = SupervisedTrainer(device, max_epochs, loader, network=autoencoder, optimizer=opt,
                                loss_function=AutoencoderKLLoss(...), decollate=False,
                                iteration_update=AutoencoderKLTrainStep(discriminator, d_opt))
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines import IterationEvents
from monai.losses import PatchAdversarialLoss
from monai.networks.schedulers import Scheduler
from monai.utils import CommonKeys
from torch import nn

from .latent import LatentConditioner

__all__ = [
    "AutoencoderKLEvalStep",
    "AutoencoderKLTrainStep",
    "LatentDiffusionSampleStep",
    "LatentDiffusionTrainStep",
    "loss_terms",
]


def loss_terms(output: Any) -> dict[str, float]:
    """The scalar ``loss*`` entries of an engine output, for ``StatsHandler`` / ``TensorBoardStatsHandler``."""
    if isinstance(output, list):  # a decollated output repeats the scalars per item
        output = output[0] if output else {}
    return {k: float(v) for k, v in output.items() if str(k).startswith("loss") and _is_scalar(v)}


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1)


def _autocast(engine: Any, device: torch.device) -> contextlib.AbstractContextManager:
    if not getattr(engine, "amp", False):
        return contextlib.nullcontext()
    return torch.autocast(device.type, **(getattr(engine, "amp_kwargs", None) or {}))


def _backward_step(engine: Any, loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: Any) -> None:
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def _finish(engine: Any, output: dict[str, Any]) -> Any:
    """Publish the output and fire ``MODEL_COMPLETED`` (MONAI decollates and post-processes there)."""
    engine.state.output = output
    engine.fire_event(IterationEvents.MODEL_COMPLETED)
    return engine.state.output


def _images(engine: Any, batchdata: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(image, None)`` from a tensor batch, ``(target, condition)`` from a pair or a dict batch.

    A dict batch (inference) may lack ``target``: then the first element is ``None``.
    """
    if batchdata is None:
        raise ValueError("must provide batch data for the current iteration")
    if isinstance(batchdata, Mapping) and "condition" in batchdata:
        first, second = batchdata.get("target"), batchdata["condition"]
    else:
        first, second = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)

    def plain(t: torch.Tensor | None) -> torch.Tensor | None:  # MetaTensor bookkeeping costs time in networks
        if t is None:
            return None
        t = t.as_tensor() if isinstance(t, MetaTensor) else t
        return t.to(engine.state.device, non_blocking=engine.non_blocking)

    return plain(first), plain(second)  # type: ignore[return-value]


class AutoencoderKLTrainStep:
    """One AutoencoderKL training iteration, optionally with a patch discriminator.

    The engine's ``loss_function`` must return a dict with ``loss`` (see
    :class:`~scripts.losses.AutoencoderKLLoss`).

    Args:
        discriminator: e.g. ``monai.networks.nets.PatchDiscriminator``; ``None`` disables
            the adversarial term.
        discriminator_optimizer: its optimiser (required with a discriminator).
        adversarial_weight: weight of the generator's adversarial term and of the
            discriminator loss; 0 disables the adversarial term.
        adversarial_warmup_epochs: epochs trained without the adversarial term; from epoch
            ``adversarial_warmup_epochs + 1`` on, both networks train.
        adversarial_loss: defaults to ``PatchAdversarialLoss(criterion="least_squares")``.
    """

    def __init__(
        self,
        discriminator: nn.Module | None = None,
        discriminator_optimizer: torch.optim.Optimizer | None = None,
        adversarial_weight: float = 0.01,
        adversarial_warmup_epochs: int = 5,
        adversarial_loss: nn.Module | None = None,
    ) -> None:
        if discriminator is not None and discriminator_optimizer is None:
            raise ValueError("a discriminator needs a discriminator_optimizer")
        self.discriminator = discriminator
        self.discriminator_optimizer = discriminator_optimizer
        self.adversarial_weight = float(adversarial_weight)
        self.adversarial_warmup_epochs = int(adversarial_warmup_epochs)
        self.adversarial_loss = adversarial_loss or PatchAdversarialLoss(criterion="least_squares")
        self._d_scaler: Any = None

    def adversarial_active(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (1-based) trains with the adversarial term."""
        return self.discriminator is not None and self.adversarial_weight > 0 and epoch > self.adversarial_warmup_epochs

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, Any]:
        images, _ = _images(engine, batchdata)
        adversarial = self.adversarial_active(engine.state.epoch)
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=True)
        with _autocast(engine, images.device):
            reconstruction, z_mu, z_sigma = engine.network(images)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            terms = engine.loss_function(reconstruction, images, z_mu, z_sigma)
            loss = terms["loss"]
            if adversarial:
                logits_fake = self.discriminator(reconstruction.contiguous().float())[-1]
                generator_adv = self.adversarial_loss(logits_fake, target_is_real=True, for_discriminator=False)
                loss = loss + self.adversarial_weight * generator_adv
                terms["loss_generator_adv"] = generator_adv.detach()
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        _backward_step(engine, loss, engine.optimizer, engine.scaler if engine.amp else None)
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if adversarial:
            terms["loss_discriminator"] = self._discriminator_step(engine, images, reconstruction.detach())
        output = {CommonKeys.IMAGE: images, CommonKeys.LABEL: images, CommonKeys.PRED: reconstruction.detach()}
        return _finish(engine, {**output, **terms, CommonKeys.LOSS: loss.detach()})

    def _discriminator_step(self, engine: Any, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        assert self.discriminator is not None and self.discriminator_optimizer is not None
        if engine.amp and self._d_scaler is None:
            self._d_scaler = torch.amp.GradScaler(real.device.type)
        self.discriminator.train()
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        with _autocast(engine, real.device):
            loss_fake = self.adversarial_loss(
                self.discriminator(fake.contiguous().float())[-1], target_is_real=False, for_discriminator=True
            )
            loss_real = self.adversarial_loss(
                self.discriminator(real.contiguous().float())[-1], target_is_real=True, for_discriminator=True
            )
            loss = self.adversarial_weight * 0.5 * (loss_fake + loss_real)
        _backward_step(engine, loss, self.discriminator_optimizer, self._d_scaler)
        return loss.detach()


class AutoencoderKLEvalStep:
    """Validation iteration of the autoencoder: ``pred`` is the reconstruction of ``image``."""

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, torch.Tensor]:
        images, _ = _images(engine, batchdata)
        engine.network.eval()
        with torch.no_grad(), _autocast(engine, images.device):
            reconstruction = engine.network.reconstruct(images)
        return _finish(
            engine, {CommonKeys.IMAGE: images, CommonKeys.LABEL: images, CommonKeys.PRED: reconstruction.float()}
        )


class LatentDiffusionTrainStep:
    """One latent diffusion training iteration on ``(target, condition)`` batches.

    The engine's ``network`` is the diffusion UNet, ``inferer`` a
    ``LatentDiffusionInferer`` (its scheduler sets the number of training timesteps and
    its ``scale_factor`` the latent scale), ``loss_function`` compares the predicted
    with the drawn noise (MSE).

    Args:
        autoencoder: the frozen first stage (eval mode, no gradients).
        conditioner: how the condition reaches the UNet (cross-attention tokens or concat).
    """

    def __init__(self, autoencoder: nn.Module, conditioner: LatentConditioner) -> None:
        self.autoencoder = autoencoder
        self.conditioner = conditioner

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, Any]:
        target, condition = _images(engine, batchdata)
        if target is None or condition is None:
            raise ValueError("latent diffusion training needs (target, condition) batches")
        inferer = engine.inferer
        latent, context = self.conditioner(self.autoencoder, condition, inferer.scale_factor)
        noise = torch.randn_like(latent)
        timesteps = torch.randint(
            0, inferer.scheduler.num_train_timesteps, (target.shape[0],), device=target.device
        ).long()
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=True)
        with _autocast(engine, target.device):
            noise_pred = inferer(
                inputs=target,
                autoencoder_model=self.autoencoder,
                diffusion_model=engine.network,
                noise=noise,
                timesteps=timesteps,
                condition=context,
                mode=self.conditioner.mode,
            )
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            loss = engine.loss_function(noise_pred.float(), noise.float())
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        _backward_step(engine, loss, engine.optimizer, engine.scaler if engine.amp else None)
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        output = {CommonKeys.IMAGE: condition, CommonKeys.LABEL: target, CommonKeys.LOSS: loss.detach()}
        return _finish(engine, {**output, "loss_mse": loss.detach()})


class LatentDiffusionSampleStep:
    """Generate the target from the condition by DDIM sampling (validation and inference).

    Batches are ``(target, condition)`` pairs (validation) or dicts with ``condition``
    (and optionally ``target``). The output has ``image`` (condition), ``pred``
    (generated target) and, when known, ``label`` (true target).

    Args:
        autoencoder: the frozen first stage.
        conditioner: as used in training.
        scheduler: the sampling scheduler (e.g. ``DDIMScheduler``); its timesteps are set
            to ``num_inference_steps`` here.
        num_inference_steps: denoising steps.
        seed: seed of the initial noise, so that validation samples are comparable
            between epochs.
    """

    def __init__(
        self,
        autoencoder: nn.Module,
        conditioner: LatentConditioner,
        scheduler: Scheduler,
        num_inference_steps: int = 50,
        seed: int | None = 0,
    ) -> None:
        self.autoencoder = autoencoder
        self.conditioner = conditioner
        self.scheduler = scheduler
        self.num_inference_steps = int(num_inference_steps)
        self.scheduler.set_timesteps(self.num_inference_steps)
        self.seed = seed

    def __call__(self, engine: Any, batchdata: Any) -> dict[str, Any]:
        target, condition = _images(engine, batchdata)
        if condition is None:
            raise ValueError("sampling needs a condition: (target, condition) pairs or dicts with 'condition'")
        engine.network.eval()
        inferer = engine.inferer
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=condition.device).manual_seed(self.seed + engine.state.iteration)
        with torch.no_grad():
            latent, context = self.conditioner(self.autoencoder, condition, inferer.scale_factor)
            noise = torch.randn(latent.shape, generator=generator, device=latent.device, dtype=latent.dtype)
            with _autocast(engine, condition.device):
                generated = inferer.sample(
                    input_noise=noise,
                    autoencoder_model=self.autoencoder,
                    diffusion_model=engine.network,
                    scheduler=self.scheduler,
                    conditioning=context,
                    mode=self.conditioner.mode,
                    verbose=False,
                )
        output: dict[str, Any] = {CommonKeys.IMAGE: condition, CommonKeys.PRED: generated.float()}
        if target is not None:
            output[CommonKeys.LABEL] = target
        return _finish(engine, output)
