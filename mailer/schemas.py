"""Editors' API models: what requests carry in and what answers show (never raw rows)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListCreate(Strict):
    slug: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)


class ListPublic(BaseModel):
    id: int
    slug: str
    name: str
    description: str
    created_at: datetime


class FormCreate(Strict):
    slug: str = Field(min_length=1, max_length=64)
    lists: list[str] = Field(min_length=1, max_length=50)
    consent_text: str = Field(min_length=1, max_length=5000)
    redirect_url: str | None = Field(default=None, max_length=2000)
    name: str = Field(default="", max_length=200)
    heading: str = Field(default="", max_length=500)
    consent_checkbox: bool = False


class FormUpdate(Strict):
    lists: list[str] | None = Field(default=None, min_length=1, max_length=50)
    consent_text: str | None = Field(default=None, min_length=1, max_length=5000)
    redirect_url: str | None = Field(default=None, max_length=2000)
    name: str | None = Field(default=None, max_length=200)
    heading: str | None = Field(default=None, max_length=500)
    consent_checkbox: bool | None = None


class FormPublic(BaseModel):
    id: int
    slug: str
    name: str
    heading: str
    lists: list[str]
    consent_text: str
    consent_version: int
    consent_checkbox: bool
    redirect_url: str
    form_url: str
    embed_snippet: str


class SubscriptionPublic(BaseModel):
    slug: str
    name: str
    status: str
    subscribed_at: datetime
    confirmed_at: datetime | None


class ConsentEventPublic(BaseModel):
    seq: int
    action: str
    at: datetime
    lists: list[str]
    form: str
    consent_text: str
    consent_version: int | None
    source_url: str
    ip: str
    user_agent: str
    hash: str


class SubscriberPublic(BaseModel):
    id: int
    email: str
    name: str
    created_at: datetime
    erased: bool
    lists: list[SubscriptionPublic]
    consent_events: list[ConsentEventPublic]


class ChainVerification(BaseModel):
    subscriber_id: int
    valid: bool
    events: int
    first_bad_seq: int | None
    reason: str


class Erased(BaseModel):
    id: int
    erased: bool
