from pixiu.chat.messages import ROLES, Conversation, Message
from pixiu.chat.templates import Template, get_template, list_templates

__all__ = ["ROLES", "Conversation", "Message", "Template", "get_template", "list_templates"]
