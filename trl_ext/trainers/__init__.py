"""TRL trainer subclasses: ``grpo`` (RLMT, ``ThinkingGRPOTrainer``) and ``online_dpo`` (self-improving
pretraining). Import the module you need (``from trl_ext.trainers.grpo import ...``); this package
imports neither, so one does not pull in the other."""
