"""fastcore.pure: fastcore's architecture in pure Python (standard library + httptools).

(Differences list: filled in below once measured.)
"""
from .._core import FileWrapper, Headers, RequestBodyError, Response
from ..config import ServerConfig
from .request import Request
from .server import Server

__all__ = ["Server", "ServerConfig", "Request", "Response", "Headers", "FileWrapper", "RequestBodyError"]
