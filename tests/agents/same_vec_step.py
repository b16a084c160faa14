"""One check for the tests that step an SB3 VecEnv over a population beside SB3's
DummyVecEnv of the same runs as single envs."""
import numpy as np

TOL = dict(rtol=1e-4, atol=1e-5)


def assert_same_vec_step(got: tuple, want: tuple) -> int:
    """`got` and `want` are SB3 step results (obs, rewards, dones, infos): the same within
    float tolerance, the same finished runs with the same last observations and time
    limits. Returns how many runs finished."""
    obs, rewards, dones, infos = got
    d_obs, d_rewards, d_dones, d_infos = want
    np.testing.assert_allclose(obs, d_obs, **TOL)
    np.testing.assert_allclose(rewards, d_rewards, **TOL)
    assert dones.tolist() == d_dones.tolist()
    for info, d_info in zip(infos, d_infos):
        assert ("terminal_observation" in info) == ("terminal_observation" in d_info)
        if "terminal_observation" in info:
            np.testing.assert_allclose(info["terminal_observation"], d_info["terminal_observation"], **TOL)
            assert info["TimeLimit.truncated"] == d_info["TimeLimit.truncated"]
    return int(dones.sum())
