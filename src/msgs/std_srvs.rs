//! `std_srvs` services the node serves: `SetBool` (`~/enable`) and `Trigger`
//! (`~/reload_model`).

use serde::{Deserialize, Serialize};

/// `std_srvs/srv/SetBool` request: the new state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBoolRequest {
    pub data: bool,
}

/// `std_srvs/srv/SetBool` response: whether the change took effect, and a word on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBoolResponse {
    pub success: bool,
    pub message: String,
}

impl ros2_client::Message for SetBoolRequest {}
impl ros2_client::Message for SetBoolResponse {}

/// Package and name of the service type, as `ros2 service type` prints it (`std_srvs/srv/SetBool`).
pub const SET_BOOL: (&str, &str) = ("std_srvs", "SetBool");

/// `std_srvs/srv/Trigger` request. ROS 2 gives every empty message one placeholder byte, so
/// the wire form is that byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerRequest {
    pub structure_needs_at_least_one_member: u8,
}

/// `std_srvs/srv/Trigger` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerResponse {
    pub success: bool,
    pub message: String,
}

impl ros2_client::Message for TriggerRequest {}
impl ros2_client::Message for TriggerResponse {}

/// Package and name of `std_srvs/srv/Trigger`.
pub const TRIGGER: (&str, &str) = ("std_srvs", "Trigger");
