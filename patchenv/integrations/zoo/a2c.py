"""A2C for the patchenv ids (``-conf patchenv.integrations.zoo.a2c``; package docstring).

An update every 16 ViT steps (Zoo's default is 5, from an n_steps tuned for many envs)."""
from patchenv.integrations.zoo import for_every_id

hyperparams = for_every_id(dict(
    policy="MlpPolicy",
    n_timesteps=2048,
    n_envs=1,
    n_steps=16,
    learning_rate=7e-4,
    gamma=0.99,
    ent_coef=0.01,
    policy_kwargs="dict(net_arch=[64, 64])",
))
