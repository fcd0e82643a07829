"""Starts the coin sorter node and the reference actuator with the package's parameters.

    ros2 launch coin_sorter coin_sorter.launch.py [params_file:=FILE] [model_path:=FILE]
        [backend:=rcl|dds]
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params_file = LaunchConfiguration("params_file")
    model_path = LaunchConfiguration("model_path")
    backend = LaunchConfiguration("backend")
    default_params = PathJoinSubstitution(
        [FindPackageShare("coin_sorter"), "config", "coin_sorter.yaml"])
    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file", default_value=default_params,
            description="ROS 2 parameters file for both nodes"),
        DeclareLaunchArgument(
            "model_path", default_value="models/coin_resnet50.pt",
            description="TorchScript coin classifier (metadata .json beside it)"),
        DeclareLaunchArgument(
            "backend", default_value="",
            description="the sorter's ROS 2 backend: rcl or dds (empty: the build's default)"),
        Node(
            package="coin_sorter",
            executable="coin_sorter_node",
            name="coin_sorter",
            parameters=[params_file, {"model_path": model_path}],
            additional_env={"COIN_SORTER_BACKEND": backend},
            output="screen",
        ),
        Node(
            package="coin_sorter",
            executable="coin_sorter_actuator",
            name="coin_sorter_actuator",
            parameters=[params_file],
            output="screen",
        ),
    ])
