"""gRPC servicers for booking: proto <-> domain, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from google.protobuf import timestamp_pb2
from switchboard.booking.v1 import booking_pb2 as pb
from switchboard.booking.v1 import booking_pb2_grpc as pb_grpc

from server.booking import model
from server.booking.model import (
    Actor,
    Booking,
    BookingSource,
    BookingStatus,
    DayOff,
    DaySlots,
    Master,
    ServiceOption,
)
from server.booking.service import (
    BookingService,
    MasterChange,
    ServiceChange,
    lunch_from,
    working_hours_from,
)
from server.kernel.context import ServicerContext, current_call
from server.kernel.errors import FieldViolation, InvalidArgument
from server.kernel.wire import to_timestamp

_STATUSES = {
    BookingStatus.ACTIVE: pb.BOOKING_STATUS_ACTIVE,
    BookingStatus.CANCELLED: pb.BOOKING_STATUS_CANCELLED,
    BookingStatus.COMPLETED: pb.BOOKING_STATUS_COMPLETED,
}
_SOURCES = {
    BookingSource.CLIENT: pb.BOOKING_SOURCE_CLIENT,
    BookingSource.MANUAL: pb.BOOKING_SOURCE_MANUAL,
}
_ACTORS = {Actor.CLIENT: pb.BOOKING_ACTOR_CLIENT, Actor.MASTER: pb.BOOKING_ACTOR_MASTER}

_MASTER_FIELDS = frozenset({"display_name", "working_hours", "lunch", "active"})
_SERVICE_FIELDS = frozenset({"name", "duration_minutes", "price_minor_units", "active"})


def _instant(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _uuid(value: str) -> UUID:
    return UUID(value)  # the contract's format rule has validated it


def _request_id(value: str) -> UUID | None:
    return UUID(value) if value else None


def master_to_proto(master: Master) -> pb.Master:
    out = pb.Master(
        id=str(master.id),
        user_id=str(master.user_id),
        display_name=master.display_name,
        working_hours=[
            pb.WorkingHours(
                iso_weekday=w.iso_weekday,
                start_time=model.format_hhmm(w.hours.start),
                end_time=model.format_hhmm(w.hours.end),
            )
            for w in master.working_hours
        ],
        active=master.active,
        create_time=to_timestamp(master.create_time),
    )
    if master.lunch is not None:
        out.lunch.start_time = model.format_hhmm(master.lunch.start)
        out.lunch.end_time = model.format_hhmm(master.lunch.end)
    return out


def service_to_proto(service: ServiceOption) -> pb.ServiceOption:
    return pb.ServiceOption(
        id=service.id,
        name=service.name,
        duration_minutes=service.duration_minutes,
        price_minor_units=service.price_minor_units,
        currency_code=service.currency_code,
        active=service.active,
        position=service.position,
    )


def booking_to_proto(booking: Booking, local_start: str) -> pb.Booking:
    out = pb.Booking(
        id=str(booking.id),
        master_id=str(booking.master_id),
        master_display_name=booking.master_display_name,
        service_id=booking.service_id,
        service_name=booking.service_name,
        start_time=to_timestamp(booking.start),
        end_time=to_timestamp(booking.end),
        status=_STATUSES[booking.status],
        source=_SOURCES[booking.source],
        client_user_id=str(booking.client_user_id) if booking.client_user_id else "",
        client_name=booking.client_name,
        client_phone=booking.client_phone or "",
        price_minor_units=booking.price_minor_units,
        currency_code=booking.currency_code,
        create_time=to_timestamp(booking.create_time),
        cancel_reason=booking.cancel_reason,
        local_start=local_start,
    )
    if booking.cancel_time is not None:
        out.cancel_time.CopyFrom(to_timestamp(booking.cancel_time))
    if booking.cancelled_by is not None:
        out.cancelled_by = _ACTORS[booking.cancelled_by]
    return out


def day_to_proto(day: DaySlots) -> pb.AvailableDay:
    return pb.AvailableDay(
        date=day.day.isoformat(),
        slots=[
            pb.Slot(
                start_time=to_timestamp(s.start),
                end_time=to_timestamp(s.end),
                local_time=s.local_time,
            )
            for s in day.slots
        ],
        day_off=day.day_off,
        not_working=day.not_working,
    )


def day_off_to_proto(day: DayOff) -> pb.DayOff:
    return pb.DayOff(date=day.day.isoformat(), note=day.note)


def _mask(paths: list[str], allowed: frozenset[str], prefix: str) -> set[str]:
    fields = {p.removeprefix(f"{prefix}.") for p in paths}
    unknown = sorted(fields - allowed)
    if unknown or not fields:
        raise InvalidArgument(
            "INVALID_FIELDS",
            f"update_mask may name only {sorted(allowed)}",
            violations=[FieldViolation("update_mask", f"unknown or no paths: {unknown}")],
            domain=model.DOMAIN,
        )
    return fields


class BookingApi(pb_grpc.BookingServiceServicer):
    def __init__(self, service: BookingService) -> None:
        self._service = service

    def _booking(self, booking: Booking) -> pb.Booking:
        return booking_to_proto(booking, self._service.local_start(booking))

    async def ListMasters(
        self, request: pb.ListMastersRequest, context: ServicerContext
    ) -> pb.ListMastersResponse:
        masters, token = await self._service.list_masters(request.page_size, request.page_token)
        return pb.ListMastersResponse(
            masters=[master_to_proto(m) for m in masters], next_page_token=token
        )

    async def GetMaster(
        self, request: pb.GetMasterRequest, context: ServicerContext
    ) -> pb.GetMasterResponse:
        master = await self._service.get_master(_uuid(request.master_id))
        return pb.GetMasterResponse(master=master_to_proto(master))

    async def ListServices(
        self, request: pb.ListServicesRequest, context: ServicerContext
    ) -> pb.ListServicesResponse:
        services, token = await self._service.list_services(request.page_size, request.page_token)
        return pb.ListServicesResponse(
            services=[service_to_proto(s) for s in services], next_page_token=token
        )

    async def GetAvailability(
        self, request: pb.GetAvailabilityRequest, context: ServicerContext
    ) -> pb.GetAvailabilityResponse:
        days = await self._service.availability(
            _uuid(request.master_id), request.start_date, request.end_date, request.service_id
        )
        return pb.GetAvailabilityResponse(
            days=[day_to_proto(d) for d in days], time_zone=self._service.time_zone
        )

    async def CreateBooking(
        self, request: pb.CreateBookingRequest, context: ServicerContext
    ) -> pb.CreateBookingResponse:
        call = current_call()
        booking = await self._service.create_booking(
            call.principal,
            master_id=_uuid(request.master_id),
            service_id=request.service_id,
            start=_instant(request.start_time),
            request_id=_request_id(request.request_id),
            call_id=call.request_id,
        )
        return pb.CreateBookingResponse(booking=self._booking(booking))

    async def GetBooking(
        self, request: pb.GetBookingRequest, context: ServicerContext
    ) -> pb.GetBookingResponse:
        call = current_call()
        booking = await self._service.get_booking(
            call.principal, _uuid(request.booking_id), call.request_id
        )
        return pb.GetBookingResponse(booking=self._booking(booking))

    async def ListBookings(
        self, request: pb.ListBookingsRequest, context: ServicerContext
    ) -> pb.ListBookingsResponse:
        call = current_call()
        bookings, token = await self._service.list_bookings(
            call.principal,
            master_view=request.view == pb.BOOKING_VIEW_MASTER,
            start_date=request.start_date,
            end_date=request.end_date,
            include_cancelled=request.include_cancelled,
            page_size=request.page_size,
            page_token=request.page_token,
            call_id=call.request_id,
        )
        return pb.ListBookingsResponse(
            bookings=[self._booking(b) for b in bookings], next_page_token=token
        )

    async def CancelBooking(
        self, request: pb.CancelBookingRequest, context: ServicerContext
    ) -> pb.CancelBookingResponse:
        call = current_call()
        booking = await self._service.cancel_booking(
            call.principal, _uuid(request.booking_id), request.reason, call.request_id
        )
        return pb.CancelBookingResponse(booking=self._booking(booking))

    async def GetBookingProfile(
        self, request: pb.GetBookingProfileRequest, context: ServicerContext
    ) -> pb.GetBookingProfileResponse:
        master, active = await self._service.profile(current_call().principal)
        response = pb.GetBookingProfileResponse(time_zone=self._service.time_zone)
        if master is not None:
            response.master.CopyFrom(master_to_proto(master))
        if active is not None:
            response.active_booking.CopyFrom(self._booking(active))
        return response


class MasterApi(pb_grpc.MasterServiceServicer):
    def __init__(self, service: BookingService) -> None:
        self._service = service

    async def CreateManualBooking(
        self, request: pb.CreateManualBookingRequest, context: ServicerContext
    ) -> pb.CreateManualBookingResponse:
        call = current_call()
        booking = await self._service.create_manual_booking(
            call.principal,
            service_id=request.service_id,
            start=_instant(request.start_time),
            client_name=request.client_name,
            client_phone=request.client_phone,
            request_id=_request_id(request.request_id),
            call_id=call.request_id,
        )
        return pb.CreateManualBookingResponse(
            booking=booking_to_proto(booking, self._service.local_start(booking))
        )

    async def ListDaysOff(
        self, request: pb.ListDaysOffRequest, context: ServicerContext
    ) -> pb.ListDaysOffResponse:
        call = current_call()
        days, token = await self._service.list_days_off(
            call.principal,
            request.start_date,
            request.page_size,
            request.page_token,
            call.request_id,
        )
        return pb.ListDaysOffResponse(
            days_off=[day_off_to_proto(d) for d in days], next_page_token=token
        )

    async def SetDayOff(
        self, request: pb.SetDayOffRequest, context: ServicerContext
    ) -> pb.SetDayOffResponse:
        call = current_call()
        day = await self._service.set_day_off(
            call.principal, request.date, request.note, call.request_id
        )
        return pb.SetDayOffResponse(day_off=day_off_to_proto(day))

    async def DeleteDayOff(
        self, request: pb.DeleteDayOffRequest, context: ServicerContext
    ) -> pb.DeleteDayOffResponse:
        call = current_call()
        await self._service.delete_day_off(call.principal, request.date, call.request_id)
        return pb.DeleteDayOffResponse()

    async def SetLunchBreak(
        self, request: pb.SetLunchBreakRequest, context: ServicerContext
    ) -> pb.SetLunchBreakResponse:
        call = current_call()
        master = await self._service.set_lunch(
            call.principal,
            start_time=request.lunch.start_time,
            end_time=request.lunch.end_time,
            clear=request.clear,
            call_id=call.request_id,
        )
        return pb.SetLunchBreakResponse(master=master_to_proto(master))


class BookingAdminApi(pb_grpc.BookingAdminServiceServicer):
    def __init__(self, service: BookingService) -> None:
        self._service = service

    async def CreateMaster(
        self, request: pb.CreateMasterRequest, context: ServicerContext
    ) -> pb.CreateMasterResponse:
        call = current_call()
        master = await self._service.create_master(
            call.principal,
            user_id=_uuid(request.user_id),
            display_name=request.display_name,
            working_hours=working_hours_from(
                [(w.iso_weekday, w.start_time, w.end_time) for w in request.working_hours]
            ),
            request_id=_request_id(request.request_id),
            call_id=call.request_id,
        )
        return pb.CreateMasterResponse(master=master_to_proto(master))

    async def UpdateMaster(
        self, request: pb.UpdateMasterRequest, context: ServicerContext
    ) -> pb.UpdateMasterResponse:
        call = current_call()
        fields = _mask(list(request.update_mask.paths), _MASTER_FIELDS, "master")
        given = request.master
        lunch = (
            lunch_from(given.lunch.start_time, given.lunch.end_time, "master.lunch")
            if "lunch" in fields
            else None
        )
        change = MasterChange(
            display_name=given.display_name if "display_name" in fields else None,
            working_hours=(
                working_hours_from(
                    [(w.iso_weekday, w.start_time, w.end_time) for w in given.working_hours]
                )
                if "working_hours" in fields
                else None
            ),
            lunch=lunch,
            clear_lunch="lunch" in fields and lunch is None,
            active=given.active if "active" in fields else None,
        )
        if not given.id:
            raise InvalidArgument(
                "INVALID_FIELDS",
                "master.id is required",
                violations=[FieldViolation("master.id", "is required", "REQUIRED")],
                domain=model.DOMAIN,
            )
        try:
            master_id = UUID(given.id)
        except ValueError:
            raise InvalidArgument(
                "INVALID_FIELDS",
                "master.id is not a UUID",
                violations=[FieldViolation("master.id", "is not a UUID")],
                domain=model.DOMAIN,
            ) from None
        master = await self._service.update_master(
            call.principal, master_id, change, call.request_id
        )
        return pb.UpdateMasterResponse(master=master_to_proto(master))

    async def ListAllMasters(
        self, request: pb.ListAllMastersRequest, context: ServicerContext
    ) -> pb.ListAllMastersResponse:
        masters, token = await self._service.list_masters(
            request.page_size, request.page_token, active_only=False
        )
        return pb.ListAllMastersResponse(
            masters=[master_to_proto(m) for m in masters], next_page_token=token
        )

    async def UpdateServiceOption(
        self, request: pb.UpdateServiceOptionRequest, context: ServicerContext
    ) -> pb.UpdateServiceOptionResponse:
        call = current_call()
        fields = _mask(list(request.update_mask.paths), _SERVICE_FIELDS, "service")
        given = request.service
        change = ServiceChange(
            name=given.name if "name" in fields else None,
            duration_minutes=given.duration_minutes if "duration_minutes" in fields else None,
            price_minor_units=given.price_minor_units if "price_minor_units" in fields else None,
            active=given.active if "active" in fields else None,
        )
        service = await self._service.update_service(
            call.principal, given.id, change, call.request_id
        )
        return pb.UpdateServiceOptionResponse(service=service_to_proto(service))
