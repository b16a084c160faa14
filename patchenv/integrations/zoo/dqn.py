"""DQN for the patchenv ids (``-conf patchenv.integrations.zoo.dqn``; package docstring).

Discrete actions only: ``selection="count"`` (the default env_kwargs). Learning starts
after 256 steps (Zoo's default buffer and start are sized for millions of steps), the
exploration rate falls to 0.05 over the first 30% of the budget and the target network
follows every 256 steps."""
from patchenv.integrations.zoo import for_every_id

hyperparams = for_every_id(dict(
    policy="MlpPolicy",
    n_timesteps=2048,
    n_envs=1,
    learning_rate=1e-3,
    buffer_size=10_000,
    learning_starts=256,
    batch_size=32,
    gamma=0.99,
    train_freq=4,
    gradient_steps=1,
    target_update_interval=256,
    exploration_fraction=0.3,
    exploration_final_eps=0.05,
    policy_kwargs="dict(net_arch=[64, 64])",
))
