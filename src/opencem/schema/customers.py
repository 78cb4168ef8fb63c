"""Customer data from BSS and care systems: who the subscribers are and every touch point."""

import pyarrow as pa

from .base import TIMESTAMP, Table, col, key, location_h3

SUBSCRIBERS = Table(
    name="subscribers",
    domain="customers",
    description="Subscribers (snapshot) with segment, plan, value, device and consent flags.",
    keys=("subscriber_id",),
    columns=(
        key("subscriber_id", "Pseudonymous subscriber id"),
        col("segment", pa.string(), "Customer group: premium, postpaid, prepaid, youth, enterprise",
            nullable=False),
        col("plan", pa.string(), "Tariff plan name"),
        col("data_cap_gb", pa.float32(), "Monthly data allowance before throttling (null: unlimited)",
            "GB"),
        col("arpu_monthly", pa.float32(), "Average revenue per user per month", "EUR"),
        col("tenure_months", pa.int16(), "Months since activation", "months"),
        col("age_band", pa.string(), "Age band, e.g. 25-34"),
        col("city", pa.string(), "Home city"),
        col("province", pa.string(), "Home province / region"),
        col("home_cell_id", pa.string(), "Cell serving the home location most often"),
        col("device_model", pa.string(), "Current handset model"),
        col("device_firmware", pa.string(), "Handset firmware version"),
        col("volte_enabled", pa.bool_(), "VoLTE provisioned on the line (the BSS/HSS service flag) on the "
            "snapshot date; the handset's own VoLTE setting is not seen here"),
        col("has_broadband", pa.bool_(), "Also has a home broadband line"),
        col("broadband_line_id", pa.string(), "Home broadband line id, if any"),
        col("status", pa.string(), "active or suspended on the snapshot date (later changes: subscriber_events)"),
        col("consent_analytics", pa.bool_(), "Agreed to experience analytics on personal data"),
        col("consent_marketing", pa.bool_(), "Agreed to marketing contact"),
    ),
    ranges={"arpu_monthly": (0, 10000), "tenure_months": (0, 600), "data_cap_gb": (0, 10000)},
)

SUBSCRIBER_EVENTS = Table(
    name="subscriber_events",
    domain="customers",
    description="Dated account changes from BSS: status, VoLTE provisioning and tariff plan, one row per "
                "change as the BSS logged it.",
    keys=("event_id",),
    time_column="event_time",
    columns=(
        key("event_id", "Event identifier"),
        key("subscriber_id", "Subscriber whose account changed"),
        col("event_time", TIMESTAMP, "Time the BSS logged the change (UTC)", nullable=False),
        col("event_type", pa.string(), "status_change, volte_provisioning or plan_change", nullable=False),
        col("old_value", pa.string(), "Value before: a status (active, suspended), true/false for VoLTE "
            "provisioning, or a plan name"),
        col("new_value", pa.string(), "Value after, in the same terms", nullable=False),
        col("reason", pa.string(), "Why, as recorded: non_payment, payment_received, customer_request, "
            "bulk_migration"),
        col("channel", pa.string(), "System or channel the change came from: billing (collections), "
            "provisioning, app, web, call_centre or retail_store"),
    ),
)

BILLING = Table(
    name="billing",
    domain="customers",
    description="Monthly bills with usage and billing-error flag.",
    keys=("bill_id",),
    time_column="bill_date",
    columns=(
        key("bill_id", "Bill identifier"),
        key("subscriber_id", "Subscriber billed"),
        col("bill_date", TIMESTAMP, "Bill issue date (UTC midnight)", nullable=False),
        col("period_start", TIMESTAMP, "First day of the billed month"),
        col("amount", pa.float32(), "Amount billed", "EUR"),
        col("overage_amount", pa.float32(), "Charges above the plan fee", "EUR"),
        col("data_used_gb", pa.float32(), "Data used in the period", "GB"),
        col("billing_error", pa.bool_(), "Bill was later corrected (billing error)"),
        col("paid_on_time", pa.bool_(), "Paid by the due date"),
    ),
    ranges={"amount": (0, 100000)},
)

INTERACTIONS = Table(
    name="interactions",
    domain="customers",
    description="Every customer touch point across channels and lifecycle stages.",
    keys=("interaction_id",),
    time_column="started_at",
    columns=(
        key("interaction_id", "Interaction identifier"),
        key("subscriber_id", "Subscriber"),
        col("started_at", TIMESTAMP, "Start of the interaction (UTC)", nullable=False),
        col("channel", pa.string(), "app, web, call_centre, retail_store or social", nullable=False),
        col("lifecycle_stage", pa.string(), "discover, join, use, get_help or renew_leave",
            nullable=False),
        col("journey", pa.string(), "What the customer came to do, e.g. plan_change, bill_query"),
        col("success", pa.bool_(), "The customer's task completed in this interaction"),
        col("wait_time_s", pa.float32(), "Queue / wait time before service", "s"),
        col("handle_time_s", pa.float32(), "Handling or task time", "s"),
        col("resolved", pa.bool_(), "Issue resolved (get_help interactions)"),
        col("first_contact_resolution", pa.bool_(), "Resolved without a repeat contact"),
        col("csat", pa.int8(), "Post-interaction satisfaction 1-5 (null when not asked)"),
        col("order_to_activation_h", pa.float32(), "Order to service activation (join/renew orders)",
            "h"),
    ),
    ranges={"wait_time_s": (0, 86400), "handle_time_s": (0, 86400), "csat": (1, 5)},
)

COMPLAINTS = Table(
    name="complaints",
    domain="customers",
    description="Complaints (trouble tickets opened by customers) with category and reported place.",
    keys=("complaint_id",),
    time_column="created_at",
    columns=(
        key("complaint_id", "Complaint identifier"),
        key("subscriber_id", "Subscriber who complained"),
        col("created_at", TIMESTAMP, "Time the complaint was logged (UTC)", nullable=False),
        col("channel", pa.string(), "Channel the complaint came through"),
        col("category", pa.string(), "voice, mobile_data, video, iot, broadband, billing, coverage"),
        col("cell_id", pa.string(), "Cell where the customer reports the problem (if known)"),
        col("description", pa.string(), "Free text recorded by the agent"),
        col("resolved_at", TIMESTAMP, "Resolution time (null while open)"),
    ),
)

SURVEYS = Table(
    name="surveys",
    domain="customers",
    description="Survey answers with Net Promoter Score (0-10).",
    keys=("survey_id",),
    time_column="answered_at",
    columns=(
        key("survey_id", "Survey response identifier"),
        key("subscriber_id", "Respondent"),
        col("answered_at", TIMESTAMP, "Answer time (UTC)", nullable=False),
        col("survey_type", pa.string(), "relationship or transactional"),
        col("channel", pa.string(), "Channel the survey was answered in"),
        col("nps_score", pa.int8(), "Likelihood to recommend 0-10", nullable=False),
        col("comment", pa.string(), "Free-text comment"),
    ),
    ranges={"nps_score": (0, 10)},
)

SOCIAL_POSTS = Table(
    name="social_posts",
    domain="customers",
    description="Public social-media posts mentioning the operator, with time and place.",
    keys=("post_id",),
    time_column="posted_at",
    columns=(
        key("post_id", "Post identifier"),
        col("posted_at", TIMESTAMP, "Post time (UTC)", nullable=False),
        col("platform", pa.string(), "Social platform"),
        col("author_handle", pa.string(), "Pseudonymous author handle"),
        col("text", pa.string(), "Post text"),
        col("lat", pa.float64(), "Geotag latitude (null when not geotagged)", "deg"),
        col("lon", pa.float64(), "Geotag longitude", "deg"),
        col("city", pa.string(), "Place named by the platform"),
        location_h3(),
    ),
    location=("lat", "lon"),
    ranges={"lat": (-90, 90), "lon": (-180, 180)},
)

CHURN_EVENTS = Table(
    name="churn_events",
    domain="customers",
    description="Subscribers leaving: port-out or cancellation.",
    keys=("subscriber_id", "churned_at"),
    time_column="churned_at",
    columns=(
        key("subscriber_id", "Subscriber who left"),
        col("churned_at", TIMESTAMP, "Effective churn time (UTC)", nullable=False),
        col("churn_type", pa.string(), "voluntary or involuntary"),
        col("stated_reason", pa.string(), "Reason recorded at cancellation, e.g. network_quality, price"),
        col("ported_to", pa.string(), "Competitor the number was ported to (if known)"),
    ),
)

TABLES = (SUBSCRIBERS, SUBSCRIBER_EVENTS, BILLING, INTERACTIONS, COMPLAINTS, SURVEYS, SOCIAL_POSTS, CHURN_EVENTS)
