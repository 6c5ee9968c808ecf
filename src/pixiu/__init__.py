"""pixiu: eat every ChatGPT, output your own chatbot."""

__version__ = "0.1.0"
