"""Where weights are and how they are read: the model store (find, build, download), single checkpoint files, the readers by storage, weight formats."""
