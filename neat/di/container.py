"""The wiring diagram: which config section and which part feed each component.

Every provider names its inputs by keyword, so the diagram reads top to bottom. Which class
fills a role is decided by the component registry (`neat.config.registry`) from the
section's `type`; override any provider to swap a part, e.g. a model of your own:

    container = build_container(config)
    with container.model.override(providers.Object(MyModel())):
        container.trainer().fit()
"""

from __future__ import annotations

from pathlib import Path

from dependency_injector import containers, providers
from rich.console import Console

from neat.config.schema import ExperimentConfig
from neat.di import factories as f
from neat.monitoring import EventBus
from neat.optimization.precision import resolve_precision
from neat.training.run_dir import new_run_dir
from neat.training.trainer import RunFiles, Schedule, StepOptions, Trainer


class ServiceContainer(containers.DeclarativeContainer):
    config = providers.Dependency(instance_of=ExperimentConfig)
    model_cfg = config.provided.model
    data_cfg = config.provided.data
    training_cfg = config.provided.training
    monitoring_cfg = config.provided.monitoring

    requested_run_dir = providers.Dependency(instance_of=Path)
    requested_resume: providers.Provider[Path | None] = providers.Object(None)
    console = providers.Singleton(Console, stderr=True, emoji=False)  # as neat.cli's

    # where it runs; under torchrun every rank takes rank 0's run directory and resume point
    dist = providers.Singleton(f.make_dist, training=training_cfg)
    device = providers.Singleton(f.make_device, dist=dist, training=training_cfg)
    precision = providers.Singleton(resolve_precision, training_cfg.precision, device=device)
    run_dir = providers.Singleton(f.agreed, requested_run_dir, dist=dist)
    resume_from = providers.Singleton(f.agreed, requested_resume, dist=dist)

    # data
    cache_dir = providers.Callable(f.cache_dir_of, data=data_cfg)
    data_source = providers.Singleton(
        f.make_data_source, data=data_cfg, indexing=config.provided.indexing
    )
    tokenizer = providers.Singleton(f.make_tokenizer, data=data_cfg, source=data_source, dist=dist)
    token_data = providers.Singleton(
        f.make_token_data, data=data_cfg, source=data_source, tokenizer=tokenizer, dist=dist
    )
    train_batches = providers.Singleton(
        f.make_train_batches,
        training=training_cfg,
        model=model_cfg,
        data=data_cfg,
        token_data=token_data,
        source=data_source,
        tokenizer=tokenizer,
        device=device,
        dist=dist,
        finetune=config.provided.finetune,
    )

    # model and optimizer
    model = providers.Singleton(
        f.make_model,
        model=model_cfg,
        training=training_cfg,
        tokenizer=tokenizer,
        finetune=config.provided.finetune,
        memory=providers.Callable(f.memory_per_rank, device=device, dist=dist),
    )
    parallel_model = providers.Singleton(
        f.make_parallel_model,
        training=training_cfg,
        model=model,
        dist=dist,
        device=device,
        precision=precision,
    )
    objective = providers.Singleton(
        f.make_objective,
        finetune=config.provided.finetune,
        parallel_model=parallel_model,
        tokenizer=tokenizer,
        block_size=model_cfg.block_size,
        device=device,
        mvot=config.provided.mvot,
        model=model_cfg,
        data=data_cfg,
        training=training_cfg,
        rl=config.provided.rl,
    )
    optimizer_factory = providers.Singleton(
        f.make_optimizer_factory, optimization=config.provided.optimization, training=training_cfg
    )
    optimizer = providers.Singleton(
        f.make_optimizer, factory=optimizer_factory, model=parallel_model, device=device
    )

    # evaluation, checkpoints, monitoring
    evaluator = providers.Singleton(
        f.make_evaluator,
        evaluation=config.provided.evaluation,
        model=model_cfg,
        training=training_cfg,
        token_data=token_data,
        device=device,
        precision=precision,
        dist=dist,
    )
    checkpointer = providers.Singleton(
        f.make_checkpointer, config=config, run_dir=run_dir, dist=dist, tokenizer=tokenizer
    )
    event_bus = providers.Singleton(EventBus)
    monitors = providers.Factory(
        f.make_monitors,
        monitoring=monitoring_cfg,
        run_dir=run_dir,
        console=console,
        source=data_source,
        dist=dist,
    )

    # the loop
    schedule = providers.Singleton(
        Schedule,
        max_steps=training_cfg.max_steps,
        grad_accum_steps=training_cfg.grad_accum_steps,
        log_interval=monitoring_cfg.log_interval,
        eval_interval=config.provided.evaluation.interval,
        checkpoint_interval=config.provided.checkpoint.interval,
        save_final=config.provided.checkpoint.save_final,
        early_stopping=config.provided.evaluation.early_stopping,
        keep_best=config.provided.checkpoint.keep_best,
    )
    step_options = providers.Singleton(
        StepOptions,
        tokens_per_step=providers.Callable(
            f.tokens_per_step, training=training_cfg, model=model_cfg
        ),
        seq_len=model_cfg.block_size,
        precision=precision,
        grad_clip=config.provided.optimization.grad_clip,
        compile=training_cfg.compile,
        compile_mode=training_cfg.compile_mode,
        compile_optimizer=training_cfg.compile_optimizer,
        seed=training_cfg.seed,
    )
    run_files = providers.Singleton(
        RunFiles,
        run_dir=run_dir,
        write_run_files=providers.Callable(
            f.run_files_writer, config=config, tokenizer=tokenizer, dist=dist
        ),
        make_monitors=monitors.provider,
        resume_from=resume_from,
        config=providers.Callable(f.config_dict, config),
    )
    sampler = providers.Singleton(
        f.make_sampler,
        evaluation=config.provided.evaluation,
        model=model_cfg,
        tokenizer=tokenizer,
        device=device,
    )
    trainer = providers.Singleton(
        Trainer,
        model=model,
        parallel_model=parallel_model,
        optimizer=optimizer,
        lr_at=providers.Callable(f.lr_schedule, optimizer_factory),
        batches=train_batches,
        objective=objective,
        sampler=sampler,
        evaluator=evaluator,
        checkpointer=checkpointer,
        bus=event_bus,
        schedule=schedule,
        options=step_options,
        run=run_files,
        device=device,
        dist=dist,
    )


def build_container(
    config: ExperimentConfig,
    *,
    run_dir: Path | None = None,
    resume_from: Path | None = None,
    console: Console | None = None,
) -> ServiceContainer:
    """The composition root for library users and the CLI alike."""
    container = ServiceContainer(
        config=config,
        requested_run_dir=Path(run_dir) if run_dir else new_run_dir(config.name),
    )
    if resume_from is not None:
        container.requested_resume.override(providers.Object(Path(resume_from)))
    if console is not None:
        container.console.override(providers.Object(console))
    container.check_dependencies()
    return container
