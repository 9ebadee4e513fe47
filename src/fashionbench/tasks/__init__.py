"""The commands' own modules: each implements what the API function of the same name
does (``fashionbench.report`` is the function, ``fashionbench.tasks.report`` its
module), so that no name of the API shadows a module."""
