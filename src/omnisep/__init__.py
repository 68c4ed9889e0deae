"""omnisep: omni-modal, query-based sound separation (OmniSep).

Give a mixture and a query (text, image, audio, or a weighted mix of them,
optionally with a negative query) and get back the matching sound and the rest.
"""

__version__ = "0.1.0"

__all__ = ["Separator", "OmniSepError", "__version__"]


def __getattr__(name):
    # Lazy so that `import omnisep` (and the CLI's --help) stays fast.
    if name == "Separator":
        from omnisep.api import Separator

        return Separator
    if name == "OmniSepError":
        from omnisep.errors import OmniSepError

        return OmniSepError
    raise AttributeError(name)
