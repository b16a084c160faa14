"""PPO for the patchenv ids (``-conf patchenv.integrations.zoo.ppo``; package docstring).

Rollouts of 64 steps (Zoo's default is 2048), four epochs over them in minibatches of 32:
an update every 64 ViT steps, 32 updates in the 2048-step budget (23 digits epochs at the
tiny preset's batch of 16)."""
from patchenv.integrations.zoo import for_every_id

hyperparams = for_every_id(dict(
    policy="MlpPolicy",
    n_timesteps=2048,
    n_envs=1,
    n_steps=64,
    batch_size=32,
    n_epochs=4,
    learning_rate=3e-4,
    gamma=0.99,
    gae_lambda=0.95,
    ent_coef=0.01,
    policy_kwargs="dict(net_arch=[64, 64])",
))
