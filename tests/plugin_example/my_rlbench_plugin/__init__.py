"""An example of extending rlbench from a package of your own, without forking it.

``algo.py`` holds an algorithm (a subclass of rlbench's DQN), ``conf/algo/myalgo.yaml`` its
config; Hydra finds the yaml once this package's ``conf`` is on its search path::

    rlbench algo=myalgo hydra.searchpath=[pkg://my_rlbench_plugin.conf]

(tests/integration/test_plugin.py runs exactly that; README: "Extending rlbench from your
own package").
"""
